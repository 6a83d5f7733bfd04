"""Offline proof of infra/ and buildspec.yml: every CloudFormation template passes cfn-lint;
the data stores are encrypted, versioned, private and archived; the database is Multi-AZ,
encrypted and watched; the stacks agree on the names they share; the pipeline runs the
whole suite before it deploys. The IAM checks are in test_infra_iam.py.

Templates are read with cfn-lint's CloudFormation-aware YAML loader, then *evaluated*
(tests only): parameters and pseudo parameters substituted with example values, conditions
decided, Fn::Sub/Join/Split/If computed, so a check sees the ARN a policy would really
carry. Each template is evaluated in two scenarios, its defaults and everything optional
switched on, so both branches of every Fn::If are looked at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import cfn_yaml

from services.aws import s3 as app_s3
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TEMPLATES = sorted(path.name for path in INFRA.glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"

ACCOUNT = "111122223333"
REGION = "us-east-1"
DR_REGION = "us-west-2"
LINT_REGIONS = (REGION, DR_REGION)

# cfn-lint rules waived for infra/, each with the reason. Empty: every template is clean,
# informational findings included.
LINT_WAIVERS: dict[str, str] = {}

DATA_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DR_DATA_KEY = f"arn:aws:kms:{DR_REGION}:{ACCOUNT}:key/abcd1234-ab12-cd34-ef56-abcdef123456"
POOL_ARN = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{REGION}_EXAMPLE11"
IOS_APP = f"arn:aws:sns:{REGION}:{ACCOUNT}:app/APNS/trellis-ios"
ANDROID_APP = f"arn:aws:sns:{REGION}:{ACCOUNT}:app/GCM/trellis-android"
DR_IOS_APP = f"arn:aws:sns:{DR_REGION}:{ACCOUNT}:app/APNS/trellis-ios"
DR_ANDROID_APP = f"arn:aws:sns:{DR_REGION}:{ACCOUNT}:app/GCM/trellis-android"
SUBNETS = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]

# Parameters a template requires (no Default), then what "everything" adds.
REQUIRED: dict[str, dict[str, Any]] = {
    "foundation.yml": {
        "VpcId": "vpc-0123456789abcdef0",
        "PrivateSubnetIds": SUBNETS,
        "DomainName": "api.example.com",
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
    },
    "iam.yml": {
        "DataKeyArn": DATA_KEY,
        "CognitoUserPoolArn": POOL_ARN,
        "IosPlatformApplicationArn": IOS_APP,
        "AndroidPlatformApplicationArn": ANDROID_APP,
    },
    "dr.yml": {
        "SourceDBInstanceArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:trellis-prod",
        "PrimaryDataKeyArn": DATA_KEY,
        "VpcId": "vpc-0fedcba9876543210",
        "PrivateSubnetIds": ["subnet-0ccccccccccccccc3", "subnet-0ddddddddddddddd4"],
        "DomainName": "api.example.com",
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
    },
    "pipeline.yml": {
        "ConnectionArn": f"arn:aws:codeconnections:{REGION}:{ACCOUNT}:connection/"
        "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "FullRepositoryId": "example/trellis",
        "PassableRoleArns": [
            f"arn:aws:iam::{ACCOUNT}:role/trellis-eb-service-role",
            f"arn:aws:iam::{ACCOUNT}:role/trellis-prod-web-instance",
            f"arn:aws:iam::{ACCOUNT}:role/trellis-prod-worker-instance",
        ],
    },
}
EVERYTHING: dict[str, dict[str, Any]] = {
    "foundation.yml": {
        "DrRegion": DR_REGION,
        "DrDataKeyArn": DR_DATA_KEY,
        "ReplicationRoleArn": f"arn:aws:iam::{ACCOUNT}:role/trellis-prod-s3-replication",
        "LoadBalancerDNSName": "awseb-AWSEB-1ABCDEFGHIJK-123456789.us-east-1.elb.amazonaws.com",
        "LoadBalancerHostedZoneId": "Z35SXDOTRQ7X7K",
        "LoadBalancerFullName": "app/awseb-AWSEB-1ABCDEFGHIJK/0123456789abcdef",
        "TargetGroupFullName": "targetgroup/awseb-AWSEB-ABCDEFGHIJKL/0123456789abcdef",
        "OperatorEmail": "ops@example.com",
        "StaticDomainName": "static.example.com",
        "StaticCertificateArn": f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/"
        "00000000-0000-0000-0000-000000000002",
        "AppSecurityGroupId": "sg-0123456789abcdef0",
    },
    "iam.yml": {
        "DrRegion": DR_REGION,
        "DrDataKeyArn": DR_DATA_KEY,
        "DrIosPlatformApplicationArn": DR_IOS_APP,
        "DrAndroidPlatformApplicationArn": DR_ANDROID_APP,
        "TeamPrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/trellis-developers",
    },
    "dr.yml": {
        "LoadBalancerDNSName": "awseb-AWSEB-2ABCDEFGHIJK-987654321.us-west-2.elb.amazonaws.com",
        "LoadBalancerHostedZoneId": "Z1H1FL5HABSF5",
        "OperatorEmail": "ops@example.com",
    },
    "pipeline.yml": {"ApprovalEmail": "release@example.com"},
}
TEMPLATE_REGION = {"dr.yml": DR_REGION}
SCENARIOS = ("defaults", "everything")

NO_VALUE = object()
INTRINSICS = {
    "Ref",
    "Condition",
    "Fn::Sub",
    "Fn::Join",
    "Fn::Split",
    "Fn::Select",
    "Fn::If",
    "Fn::GetAtt",
    "Fn::Equals",
    "Fn::Not",
    "Fn::And",
    "Fn::Or",
}


@cache
def raw(name: str) -> dict[str, Any]:
    """The template as CloudFormation reads it (short-form tags become long-form dicts)."""
    return _plain(cfn_yaml.loads((INFRA / name).read_text()))


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    if isinstance(node, str):
        return str(node)
    return node


class Stack:
    """A template evaluated the way CloudFormation would, with example parameter values."""

    def __init__(self, name: str, parameters: dict[str, Any], region: str = REGION) -> None:
        self.name = name
        self.template = raw(name)
        self.region = region
        self.parameters: dict[str, Any] = {}
        for key, spec in self.template.get("Parameters", {}).items():
            value = parameters.get(key, spec.get("Default"))
            assert value is not None, f"{name}: parameter {key} needs a value"
            kind = spec["Type"]
            if (kind == "CommaDelimitedList" or kind.startswith("List<")) and isinstance(
                value, str
            ):
                value = value.split(",")
            self.parameters[key] = value
        unknown = set(parameters) - set(self.parameters)
        assert not unknown, f"{name}: no such parameters {unknown}"
        self._conditions: dict[str, bool] = {}
        self.resources = {
            logical: resource
            for logical, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.eval(self.template["Conditions"][name]))
        return self._conditions[name]

    def properties(self, logical: str) -> dict[str, Any]:
        return self.eval(self.resources[logical].get("Properties", {}))

    def of_type(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical, resource in self.resources.items():
            if resource["Type"] == kind:
                yield logical, self.properties(logical)

    def outputs(self) -> dict[str, Any]:
        return {
            key: self.eval(output["Value"])
            for key, output in self.template.get("Outputs", {}).items()
            if "Condition" not in output or self.condition(output["Condition"])
        }

    # -------------------------------------------------------------- intrinsic functions
    def eval(self, node: Any) -> Any:
        if isinstance(node, list):
            values = [self.eval(item) for item in node]
            return [value for value in values if value is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg) = next(iter(node.items()))
            if key in INTRINSICS:
                return getattr(self, "_" + key.replace("Fn::", "").lower())(arg)
            assert not key.startswith("Fn::"), f"{self.name}: evaluator lacks {key}"
        values = {key: self.eval(value) for key, value in node.items()}
        return {key: value for key, value in values.items() if value is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"trellis-{self.name.removesuffix('.yml')}",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self.template["Resources"][name]
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::S3::Bucket" and "BucketName" in props:
            return self.eval(props["BucketName"])
        if resource["Type"] == "AWS::SecretsManager::Secret":
            secret = self.eval(props["Name"])
            return f"arn:aws:secretsmanager:{self.region}:{ACCOUNT}:secret:{secret}-AbCdEf"
        named_by = {
            "AWS::KMS::Alias": "AliasName",
            "AWS::RDS::DBInstance": "DBInstanceIdentifier",
            "AWS::IAM::Role": "RoleName",
            "AWS::IAM::InstanceProfile": "InstanceProfileName",
            "AWS::CodePipeline::Pipeline": "Name",
            "AWS::CodeBuild::Project": "Name",
        }.get(resource["Type"])
        if named_by in props:
            return self.eval(props[named_by])
        return f"<{name}>"

    def _getatt(self, arg: Any) -> Any:
        logical, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
        resource = self.template["Resources"][logical]
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if attribute == "Arn" and kind == "AWS::S3::Bucket" and "BucketName" in props:
            return f"arn:aws:s3:::{self.eval(props['BucketName'])}"
        if attribute == "Arn" and kind == "AWS::IAM::Role" and "RoleName" in props:
            return f"arn:aws:iam::{ACCOUNT}:role/{self.eval(props['RoleName'])}"
        if attribute == "Arn" and kind == "AWS::KMS::Key":
            return f"arn:aws:kms:{self.region}:{ACCOUNT}:key/<{logical}>"
        if attribute == "Arn" and kind == "AWS::Logs::LogGroup":
            group = self.eval(props["LogGroupName"])
            return f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:{group}:*"
        if attribute == "Arn" and kind == "AWS::CodeBuild::Project":
            project = self.eval(props["Name"])
            return f"arn:aws:codebuild:{self.region}:{ACCOUNT}:project/{project}"
        return f"<{logical}.{attribute}>"

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        values = {key: self.eval(value) for key, value in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self._getatt(name))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def _join(self, arg: Any) -> str:
        separator, parts = arg
        return separator.join(str(part) for part in self.eval(parts))

    def _split(self, arg: Any) -> list[str]:
        separator, text = arg
        return str(self.eval(text)).split(separator)

    def _select(self, arg: Any) -> Any:
        index, items = arg
        return self.eval(items)[int(self.eval(index))]

    def _if(self, arg: Any) -> Any:
        name, then, otherwise = arg
        return self.eval(then if self.condition(name) else otherwise)

    def _condition(self, name: str) -> bool:
        return self.condition(name)

    def _equals(self, arg: Any) -> bool:
        left, right = (self.eval(value) for value in arg)
        return str(left) == str(right)

    def _not(self, arg: Any) -> bool:
        return not self.eval(arg[0])

    def _and(self, arg: Any) -> bool:
        return all(self.eval(value) for value in arg)

    def _or(self, arg: Any) -> bool:
        return any(self.eval(value) for value in arg)


@cache
def stack(name: str, scenario: str = "defaults") -> Stack:
    parameters = dict(REQUIRED.get(name, {}))
    if scenario == "everything":
        parameters |= EVERYTHING.get(name, {})
    return Stack(name, parameters, TEMPLATE_REGION.get(name, REGION))


def all_stacks() -> Iterator[Stack]:
    for name in TEMPLATES:
        for scenario in SCENARIOS:
            yield stack(name, scenario)


def cfn_lint() -> str:
    beside_python = Path(sys.executable).with_name("cfn-lint")
    found = str(beside_python) if beside_python.exists() else shutil.which("cfn-lint")
    if not found:
        pytest.fail("cfn-lint is not installed: pip install -r requirements-dev.txt")
    return found


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [cfn_lint(), "--format", "parseable", "--include-checks", "I"]
    command += ["--regions", *LINT_REGIONS]
    if LINT_WAIVERS:
        command += ["--ignore-checks", *LINT_WAIVERS]
    return subprocess.run(
        [*command, "--", *map(str, paths)], capture_output=True, text=True, timeout=300
    )


# ================================================================== cfn-lint
def test_the_four_templates_are_there() -> None:
    assert TEMPLATES == ["dr.yml", "foundation.yml", "iam.yml", "pipeline.yml"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_passes_cfn_lint_without_a_finding(name: str) -> None:
    result = lint(INFRA / name)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_cfn_lint_here_does_reject_a_broken_template(tmp_path: Path) -> None:
    """The lint run above is not vacuous: an unencrypted database is refused."""
    broken = (
        (INFRA / "foundation.yml")
        .read_text()
        .replace("StorageEncrypted: true", "StorageEncrypted: false", 1)
    )
    (tmp_path / "broken.yml").write_text(broken)
    result = lint(tmp_path / "broken.yml")
    line = broken.splitlines().index("      StorageEncrypted: false") + 1
    assert result.returncode != 0 and f"broken.yml:{line}:" in result.stdout, result.stdout


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_use_long_form_intrinsics(name: str) -> None:
    """One style across infra/ and .ebextensions (which accepts only the long form)."""
    short = re.findall(
        r"(?<![\w'\"])!(?:Ref|Sub|GetAtt|If|Join|Split|Select|Equals|Not|And|Or|"
        r"Condition|FindInMap|Base64|Cidr|ImportValue|GetAZs)\b",
        (INFRA / name).read_text(),
    )
    assert not short


def test_the_evaluator_knows_every_function_the_templates_use() -> None:
    for item in all_stacks():
        for logical in item.resources:
            item.properties(logical)
        item.outputs()


# ================================================================== encryption at rest
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_kms_key_rotates_and_is_retained(name: str) -> None:
    item = stack(name)
    keys = list(item.of_type("AWS::KMS::Key"))
    assert keys or name == "iam.yml"
    for logical, props in keys:
        assert props["EnableKeyRotation"] is True, logical
        assert item.resources[logical]["DeletionPolicy"] == "Retain", logical
        aliases = [
            a for _, a in item.of_type("AWS::KMS::Alias") if a["TargetKeyId"] == f"<{logical}>"
        ]
        assert aliases, f"{name}: {logical} has no alias"


def test_the_data_key_alias_is_the_apps_kms_key_id_in_both_regions() -> None:
    """KMS_KEY_ID=alias/trellis-prod (saved configuration) must name a key in either region."""
    for name in ("foundation.yml", "dr.yml"):
        aliases = [a["AliasName"] for _, a in stack(name).of_type("AWS::KMS::Alias")]
        assert aliases == ["alias/trellis-prod"], name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_secret_is_encrypted_with_the_data_key(scenario: str) -> None:
    item = stack("foundation.yml", scenario)
    secrets = dict(item.of_type("AWS::SecretsManager::Secret"))
    assert {s["Name"] for s in secrets.values()} >= {
        "trellis/prod/db-master",
        "trellis/prod/database-url",
        "trellis/prod/database-read-url",
    }
    for logical, props in secrets.items():
        assert props["KmsKeyId"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/<DataKey>", logical


# ================================================================== buckets
def buckets() -> Iterator[tuple[Stack, str, dict[str, Any]]]:
    for item in all_stacks():
        for logical, props in item.of_type("AWS::S3::Bucket"):
            yield item, logical, props


def data_buckets() -> Iterator[tuple[Stack, str, dict[str, Any]]]:
    for item, logical, props in buckets():
        name = props.get("BucketName", "")
        if "-uploads-" in name or "-exports-" in name:
            yield item, logical, props


def test_every_bucket_is_private_versioned_and_encrypted() -> None:
    seen = set()
    for item, logical, props in buckets():
        seen.add((item.name, logical))
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        algorithm = rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        if logical == "StaticAssetsBucket":
            # Public content through CloudFront; SSE-S3 avoids a key<->distribution cycle
            # (the reason is in foundation.yml).
            assert algorithm == "AES256"
        else:
            assert algorithm == "aws:kms", logical
            assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"].startswith(
                "arn:aws:kms:"
            ), logical
            assert rule["BucketKeyEnabled"] is True, logical
    assert {logical for _, logical in seen} == {
        "UploadsBucket",
        "ExportBucket",
        "StaticAssetsBucket",
        "UploadsReplicaBucket",
        "ExportReplicaBucket",
        "ArtifactBucket",
    }


def test_every_bucket_refuses_plain_http() -> None:
    for item, logical, _props in buckets():
        policies = [
            p["PolicyDocument"]
            for _, p in item.of_type("AWS::S3::BucketPolicy")
            if p["Bucket"] == item.eval({"Ref": logical})
        ]
        assert len(policies) == 1, logical
        denies = [
            s
            for s in policies[0]["Statement"]
            if s["Effect"] == "Deny"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies and denies[0]["Action"] == "s3:*", logical


def test_data_buckets_archive_like_the_app_does() -> None:
    """The same rules services/aws/s3.py applies with `flask infra ensure`: GLACIER after
    180 days, noncurrent versions expire, unfinished multipart uploads aborted after 7."""
    count = 0
    for _item, logical, props in data_buckets():
        count += 1
        (rule,) = props["LifecycleConfiguration"]["Rules"]
        assert rule["Status"] == "Enabled"
        assert "Prefix" not in rule and "TagFilters" not in rule, "the whole bucket"
        assert rule["Transitions"] == [
            {"StorageClass": app_s3.ARCHIVE_STORAGE_CLASS, "TransitionInDays": 180}
        ], logical
        assert app_s3.ARCHIVE_AFTER_DAYS == 180
        assert rule["NoncurrentVersionExpiration"] == {
            "NoncurrentDays": app_s3.NONCURRENT_VERSION_DAYS
        }
        assert rule["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": app_s3.ABORT_MULTIPART_DAYS
        }
        assert app_s3.ABORT_MULTIPART_DAYS == 7
    assert count == 2 * 4  # uploads + exports, primary + DR, two scenarios


def test_uploads_buckets_accept_browser_style_posts() -> None:
    for _item, logical, props in data_buckets():
        if "-uploads-" not in props["BucketName"]:
            assert "CorsConfiguration" not in props, logical
            continue
        (rule,) = props["CorsConfiguration"]["CorsRules"]
        assert "POST" in rule["AllowedMethods"] and rule["AllowedOrigins"] == ["*"]
        assert "ETag" in rule["ExposedHeaders"]


def test_bucket_names_follow_the_convention_the_app_and_iam_use() -> None:
    names = {props["BucketName"] for _, _, props in data_buckets()}
    assert names == {
        f"trellis-prod-uploads-{ACCOUNT}",
        f"trellis-prod-exports-{ACCOUNT}",
        f"trellis-prod-uploads-{ACCOUNT}-{DR_REGION}",
        f"trellis-prod-exports-{ACCOUNT}-{DR_REGION}",
    }


def test_static_assets_are_served_by_cloudfront_with_origin_access_control_only() -> None:
    for scenario in SCENARIOS:
        item = stack("foundation.yml", scenario)
        assert not list(item.of_type("AWS::CloudFront::CloudFrontOriginAccessIdentity"))
        (oac,) = (p for _, p in item.of_type("AWS::CloudFront::OriginAccessControl"))
        assert oac["OriginAccessControlConfig"]["SigningBehavior"] == "always"
        assert oac["OriginAccessControlConfig"]["OriginAccessControlOriginType"] == "s3"
        config = item.properties("StaticAssetsDistribution")["DistributionConfig"]
        origin, _avatars = config["Origins"]
        assert origin["OriginAccessControlId"] == "<StaticAssetsOriginAccessControl.Id>"
        assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
        assert origin["DomainName"] == "<StaticAssetsBucket.RegionalDomainName>"
        assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
        policy = item.properties("StaticAssetsBucketPolicy")["PolicyDocument"]
        allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
        assert allows == [
            {
                "Sid": "OnlyThisDistributionReads",
                "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::trellis-prod-static-{ACCOUNT}/*",
                "Condition": {
                    "StringEquals": {
                        "AWS:SourceArn": f"arn:aws:cloudfront::{ACCOUNT}:distribution/"
                        "<StaticAssetsDistribution>"
                    }
                },
            }
        ]


def test_the_cdn_reads_avatars_and_nothing_else_of_the_uploads_bucket() -> None:
    """ASSETS_CDN_BASE_URL: users/<id>/avatar/<upload> through the distribution, with origin
    access control; the bucket policy and the key policy let it read those only."""
    distribution = f"arn:aws:cloudfront::{ACCOUNT}:distribution/<StaticAssetsDistribution>"
    uploads = f"arn:aws:s3:::trellis-prod-uploads-{ACCOUNT}"
    for scenario in SCENARIOS:
        item = stack("foundation.yml", scenario)
        config = item.properties("StaticAssetsDistribution")["DistributionConfig"]
        _static, avatars = config["Origins"]
        assert avatars["DomainName"] == f"trellis-prod-uploads-{ACCOUNT}.s3.{REGION}.amazonaws.com"
        assert avatars["OriginAccessControlId"] == "<StaticAssetsOriginAccessControl.Id>"
        assert avatars["S3OriginConfig"] == {"OriginAccessIdentity": ""}
        (behavior,) = config["CacheBehaviors"]
        assert behavior["PathPattern"] == "users/*/avatar/*"  # the key services/uploads.py makes
        assert behavior["TargetOriginId"] == avatars["Id"]
        assert behavior["AllowedMethods"] == ["GET", "HEAD"]
        assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
        cache_policy = item.properties("AvatarsCachePolicy")["CachePolicyConfig"]
        assert cache_policy["MaxTTL"] <= 600  # a deleted avatar leaves the edge soon
        assert cache_policy["ParametersInCacheKeyAndForwardedToOrigin"]["QueryStringsConfig"] == {
            "QueryStringBehavior": "none"
        }

        policy = item.properties("UploadsBucketPolicy")["PolicyDocument"]
        allows = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
        assert allows == [
            {
                "Sid": "AssetsDistributionReadsAvatarsOnly",
                "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"},
                "Action": "s3:GetObject",
                "Resource": f"{uploads}/users/*/avatar/*",
                "Condition": {"StringEquals": {"AWS:SourceArn": distribution}},
            }
        ]
        exports = item.properties("ExportBucketPolicy")["PolicyDocument"]["Statement"]
        assert not [s for s in exports if "cloudfront" in str(s.get("Principal"))]

        key_policy = item.properties("DataKey")["KeyPolicy"]["Statement"]
        (cdn,) = [
            s for s in key_policy if s["Principal"] == {"Service": "cloudfront.amazonaws.com"}
        ]
        assert cdn["Action"] == "kms:Decrypt"
        assert cdn["Condition"] == {
            "StringEquals": {"AWS:SourceArn": distribution},
            "StringLike": {
                "kms:EncryptionContext:aws:s3:arn": [uploads, f"{uploads}/users/*/avatar/*"]
            },
        }
        outputs = item.outputs()
        assert outputs["AssetsCdnUrl"] == outputs["StaticAssetsUrl"]
        assert outputs["AssetsCdnUrl"].startswith("https://")
        cdn = make_settings("sqlite://", ASSETS_CDN_BASE_URL=outputs["AssetsCdnUrl"] + "/")
        assert cdn.assets_cdn_base_url == outputs["AssetsCdnUrl"]


def test_replication_targets_are_the_buckets_dr_yml_creates() -> None:
    primary = stack("foundation.yml", "everything")
    dr_names = {p["BucketName"] for _, p in stack("dr.yml").of_type("AWS::S3::Bucket")}
    dr_key = {"arn:aws:kms:us-west-2:111122223333:key/<DataKey>"}
    assert {stack("dr.yml").outputs()["DataKeyArn"]} == dr_key
    for logical in ("UploadsBucket", "ExportBucket"):
        replication = primary.properties(logical)["ReplicationConfiguration"]
        (rule,) = replication["Rules"]
        assert rule["Status"] == "Enabled"
        assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"}
        assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
        target = rule["Destination"]["Bucket"].removeprefix("arn:aws:s3:::")
        assert target in dr_names
        assert rule["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"] == DR_DATA_KEY
        assert replication["Role"] == EVERYTHING["foundation.yml"]["ReplicationRoleArn"]
        assert replication["Role"].endswith(
            "role/" + stack("dr.yml").properties("ReplicationRole")["RoleName"]
        )
    for logical in ("UploadsBucket", "ExportBucket"):
        assert "ReplicationConfiguration" not in stack("foundation.yml").properties(logical)


# ================================================================== database
def test_database_is_encrypted_multi_az_and_watched_by_performance_insights() -> None:
    item = stack("foundation.yml")
    db = item.properties("Database")
    assert db["Engine"] == "postgres"
    assert db["StorageEncrypted"] is True
    assert db["KmsKeyId"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/<DataKey>"
    assert db["MultiAZ"] == "true" and item.template["Parameters"]["MultiAZ"]["Default"] == "true"
    assert db["EnablePerformanceInsights"] is True
    assert db["PerformanceInsightsKMSKeyId"] == db["KmsKeyId"]
    assert db["DeletionProtection"] is True
    assert db["PubliclyAccessible"] is False
    assert int(db["BackupRetentionPeriod"]) >= 7
    assert item.resources["Database"]["DeletionPolicy"] == "Snapshot"
    assert item.resources["Database"]["UpdateReplacePolicy"] == "Snapshot"


def test_database_password_comes_from_a_generated_secret() -> None:
    item = stack("foundation.yml")
    db = item.properties("Database")
    secret_arn = item.eval({"Ref": "DatabaseMasterSecret"})
    assert db["MasterUserPassword"] == (
        "{{resolve:secretsmanager:" + secret_arn + ":SecretString:password}}"
    )
    generated = item.properties("DatabaseMasterSecret")["GenerateSecretString"]
    assert generated["GenerateStringKey"] == "password"
    assert generated["PasswordLength"] >= 32
    assert generated["ExcludePunctuation"] is True  # it goes into DATABASE_URL unescaped
    url = item.properties("DatabaseUrlSecret")["SecretString"]
    assert url.startswith("postgresql://trellis:{{resolve:secretsmanager:" + secret_arn)
    assert url.endswith(
        "@<Database.Endpoint.Address>:<Database.Endpoint.Port>/trellis?sslmode=require"
    )


def test_database_accepts_tls_only_and_only_from_the_app_security_group() -> None:
    for scenario in SCENARIOS:
        for name in ("foundation.yml", "dr.yml"):
            item = stack(name, scenario)
            group = item.properties("DatabaseSecurityGroup")
            (rule,) = group["SecurityGroupIngress"]
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
            assert set(rule) <= {
                "IpProtocol",
                "FromPort",
                "ToPort",
                "SourceSecurityGroupId",
                "Description",
            }
            expected = (
                EVERYTHING[name].get("AppSecurityGroupId") if scenario == "everything" else None
            )
            assert rule["SourceSecurityGroupId"] == (expected or "<AppSecurityGroup>")
            (egress,) = group["SecurityGroupEgress"]
            assert (egress["IpProtocol"], egress["CidrIp"]) == ("icmp", "255.255.255.255/32")
            params = item.properties("DatabaseParameterGroup")
            assert params["Parameters"]["rds.force_ssl"] == "1"
            assert params["Family"] == "postgres17"


def test_read_replicas_in_this_region_and_the_dr_region() -> None:
    local = stack("foundation.yml").properties("DatabaseReadReplica")
    assert local["SourceDBInstanceIdentifier"] == "trellis-prod"
    assert local["EnablePerformanceInsights"] is True and local["DeletionProtection"] is True
    remote_stack = stack("dr.yml")
    remote = remote_stack.properties("DatabaseReplica")
    assert remote["SourceDBInstanceIdentifier"] == REQUIRED["dr.yml"]["SourceDBInstanceArn"]
    assert remote["SourceRegion"] == REGION
    assert remote["KmsKeyId"] == f"arn:aws:kms:{DR_REGION}:{ACCOUNT}:key/<DataKey>"
    assert remote["PerformanceInsightsKMSKeyId"] == remote["KmsKeyId"]
    assert remote["DeletionProtection"] is True
    assert remote_stack.resources["DatabaseReplica"]["DeletionPolicy"] == "Retain"
    assert (
        stack("foundation.yml").outputs()["DatabaseInstanceArn"]
        == (REQUIRED["dr.yml"]["SourceDBInstanceArn"])
    )


def test_dr_and_ci_run_the_production_postgresql_major_version() -> None:
    major = raw("foundation.yml")["Parameters"]["DBEngineMajorVersion"]["Default"]
    assert raw("dr.yml")["Parameters"]["DBEngineMajorVersion"]["Default"] == major
    assert buildspec()["env"]["variables"]["PG_MAJOR"] == major


# ================================================================== alarms and DNS
def test_operators_are_alarmed_on_5xx_rate_p99_latency_and_unhealthy_hosts() -> None:
    item = stack("foundation.yml", "everything")
    alarms = dict(item.of_type("AWS::CloudWatch::Alarm"))
    by_metric = {}
    for props in alarms.values():
        metrics = [props.get("MetricName")] + [
            m["MetricStat"]["Metric"]["MetricName"]
            for m in props.get("Metrics", [])
            if "MetricStat" in m
        ]
        for metric in filter(None, metrics):
            by_metric.setdefault(metric, props)
        assert props["AlarmActions"] == ["<OperatorsTopic>"]
    assert by_metric["HTTPCode_Target_5XX_Count"] is by_metric["RequestCount"]
    assert by_metric["TargetResponseTime"]["ExtendedStatistic"] == "p99"
    unhealthy = by_metric["UnHealthyHostCount"]
    assert {d["Name"] for d in unhealthy["Dimensions"]} == {"LoadBalancer", "TargetGroup"}
    for metric in ("HTTPCode_Target_5XX_Count", "TargetResponseTime", "UnHealthyHostCount"):
        dims = (
            by_metric[metric].get("Dimensions")
            or by_metric[metric]["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"]
        )
        lb = next(d["Value"] for d in dims if d["Name"] == "LoadBalancer")
        assert lb == EVERYTHING["foundation.yml"]["LoadBalancerFullName"]
    assert {"CPUUtilization", "FreeStorageSpace", "ReplicaLag"} <= set(by_metric)
    topic = item.properties("OperatorsTopic")
    assert topic["KmsMasterKeyId"] == "<DataKey>"
    # Before `eb create` there is no load balancer: no ALB alarms, no DNS record yet.
    before = {
        p.get("MetricName") for _, p in stack("foundation.yml").of_type("AWS::CloudWatch::Alarm")
    }
    assert before == {"CPUUtilization", "FreeStorageSpace", "ReplicaLag"}
    assert not list(stack("foundation.yml").of_type("AWS::Route53::RecordSet"))


def test_dns_fails_over_from_the_primary_to_the_dr_region() -> None:
    primary = stack("foundation.yml", "everything").properties("ApiRecord")
    secondary = stack("dr.yml", "everything").properties("ApiSecondaryRecord")
    assert primary["Name"] == secondary["Name"] == "api.example.com"
    assert (primary["Failover"], secondary["Failover"]) == ("PRIMARY", "SECONDARY")
    assert primary["SetIdentifier"] != secondary["SetIdentifier"]
    assert primary["HealthCheckId"] == "<ApiHealthCheck>"
    assert primary["AliasTarget"]["DNSName"] == EVERYTHING["foundation.yml"]["LoadBalancerDNSName"]
    check = stack("foundation.yml", "everything").properties("ApiHealthCheck")
    assert check["HealthCheckConfig"]["ResourcePath"] == "/healthz"
    for item in (stack("foundation.yml"), stack("dr.yml")):
        (cert,) = (p for _, p in item.of_type("AWS::CertificateManager::Certificate"))
        assert cert["ValidationMethod"] == "DNS" and cert["DomainValidationOptions"]


# ================================================================== names shared with EB
def saved_config(name: str) -> dict[str, Any]:
    path = ROOT / ".elasticbeanstalk" / "saved_configs" / f"{name}.cfg.yml"
    return yaml.safe_load(path.read_text())["OptionSettings"]


@pytest.mark.parametrize("config", ["prod", "prod-worker"])
def test_the_saved_configurations_name_what_the_stacks_create(config: str) -> None:
    """The example account 111122223333 in the saved configurations is ours here too."""
    options = saved_config(config)
    env = options["aws:elasticbeanstalk:application:environment"]
    foundation = stack("foundation.yml").outputs()
    iam = stack("iam.yml").outputs()
    assert env["UPLOADS_BUCKET"] == foundation["UploadsBucketName"]
    assert env["EXPORT_BUCKET"] == foundation["ExportBucketName"]
    assert env["KMS_KEY_ID"].endswith(":" + foundation["KmsKeyId"])
    secrets = options["aws:elasticbeanstalk:application:environmentsecrets"]
    assert foundation["DatabaseUrlSecretArn"].startswith(secrets["DATABASE_URL"])
    profile = options["aws:autoscaling:launchconfiguration"]["IamInstanceProfile"]
    expected = "WorkerInstanceProfileName" if config.endswith("worker") else "InstanceProfileName"
    assert profile == iam[expected] == stack("iam.yml").parameters[expected]
    role = options["aws:elasticbeanstalk:environment"]["ServiceRole"]
    assert role == f"arn:aws:iam::{ACCOUNT}:role/" + stack("iam.yml").parameters["ServiceRoleName"]


# ================================================================== pipeline and buildspec
@cache
def buildspec() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "buildspec.yml").read_text())


def commands(phase: str) -> list[str]:
    return buildspec()["phases"][phase]["commands"]


def test_buildspec_runs_make_test_before_anything_is_bundled() -> None:
    build = commands("build")
    assert build[0] == "make test"
    assert [c for c in build if "deploy.bundle" in c], "bundles are built after the tests"
    assert (ROOT / "deploy" / "bundle.py").exists()


def test_buildspec_provides_python_312_postgresql_and_chromium() -> None:
    install = " ; ".join(commands("install"))
    assert "sys.version_info[:2] == (3, 12)" in install
    assert '"postgresql-$PG_MAJOR"' in install and "apt.postgresql.org" in install
    assert re.search(r"\bchromium\b", install)
    pre = " ; ".join(commands("pre_build"))
    assert 'pg_ctlcluster "$PG_MAJOR" main start' in pre and "createdb test" in pre
    url = buildspec()["env"]["variables"]["TEST_DATABASE_URL"]
    assert url.startswith("postgresql://postgres:") and url.endswith("@127.0.0.1:5432/test")
    image = stack("pipeline.yml").properties("TestProject")["Environment"]["Image"]
    assert image.endswith("/python:3.12-bookworm")


def test_every_buildspec_command_is_valid_bash() -> None:
    for phase in buildspec()["phases"]:
        for command in commands(phase):
            result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
            assert result.returncode == 0, (command, result.stderr)


def test_pipeline_tests_then_deploys_test_then_waits_for_approval_then_prod() -> None:
    for scenario in SCENARIOS:
        item = stack("pipeline.yml", scenario)
        pipeline = item.properties("Pipeline")
        stages = {s["Name"]: s["Actions"] for s in pipeline["Stages"]}
        assert list(stages) == ["Source", "Test", "DeployTest", "Approve", "DeployProd"]
        (test,) = stages["Test"]
        assert test["ActionTypeId"]["Provider"] == "CodeBuild"
        outputs = [a["Name"] for a in test["OutputArtifacts"]]
        assert outputs == list(buildspec()["artifacts"]["secondary-artifacts"])
        (approve,) = stages["Approve"]
        assert approve["ActionTypeId"] == {
            "Category": "Approval",
            "Owner": "AWS",
            "Provider": "Manual",
            "Version": "1",
        }
        deploys = {
            (a["Configuration"]["EnvironmentName"], a["InputArtifacts"][0]["Name"], a["RunOrder"])
            for stage in ("DeployTest", "DeployProd")
            for a in stages[stage]
        }
        assert deploys == {
            ("trellis-test", "WebBundle", 1),
            ("trellis-prod", "WebBundle", 1),
            ("trellis-prod-worker", "WorkerBundle", 2),
        }
        for stage in ("DeployTest", "DeployProd"):
            for action in stages[stage]:
                assert action["ActionTypeId"]["Provider"] == "ElasticBeanstalk"
                assert action["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/trellis-eb-deploy"
        assert pipeline["ArtifactStore"]["EncryptionKey"] == {
            "Id": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/<ArtifactKey>",
            "Type": "KMS",
        }
        project = item.properties("TestProject")
        assert project["Source"] == {"Type": "CODEPIPELINE", "BuildSpec": "buildspec.yml"}
        assert project["EncryptionKey"] == pipeline["ArtifactStore"]["EncryptionKey"]["Id"]


def test_pipeline_source_is_a_connection_or_codecommit() -> None:
    connection = stack("pipeline.yml").properties("Pipeline")["Stages"][0]["Actions"][0]
    assert connection["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert connection["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"
    codecommit = Stack(
        "pipeline.yml",
        REQUIRED["pipeline.yml"] | {"SourceProvider": "CodeCommit", "ConnectionArn": "none"},
    )
    action = codecommit.properties("Pipeline")["Stages"][0]["Actions"][0]
    assert action["ActionTypeId"]["Provider"] == "CodeCommit"
    assert action["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"
    assert "SourceChangedRule" in codecommit.resources


# ================================================================== the runbook
def test_the_runbook_covers_every_stack_and_every_required_parameter() -> None:
    text = OPERATIONS.read_text()
    for name in TEMPLATES:
        assert f"infra/{name}" in text, name
        for key, spec in raw(name)["Parameters"].items():
            if "Default" not in spec:
                assert key in text, f"docs/operations.md never says how to set {name} {key}"
    for step in (
        "eb create trellis-prod --cfg prod",
        "--region",
        "promote-read-replica",
        "container_commands",
        "leader_only",
        "--version",
        "create-user-pool-client",
        "COGNITO_APP_CLIENT_IDS",
        "put-secret-value",
    ):
        assert step in text, step
