"""Least privilege, checked on every policy document in infra/*.yml (identity policies,
trust policies, bucket policies, key policies), in every scenario of test_infra_templates:

- "Action": "*" is allowed in one place, the break-glass role;
- an Allow on "Resource": "*" may hold only actions AWS gives no resource-level
  permissions to (UNSCOPABLE_ACTIONS, a short list of what the templates use);
- no Allow uses NotAction/NotResource, a service-wide wildcard or a wildcard in an action
  name; every resource an identity policy allows is in this account and region;
- no resource policy allows Principal "*"; every trust policy names who, and people
  need MFA (break-glass: within the hour, one-hour sessions);
- AWS managed policies only where MANAGED_POLICIES says, each with its reason;
- the instance roles hold exactly the grants the app needs (spelled out below), so a new
  permission is a deliberate change to this file.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.deploy.test_infra_templates import (
    ACCOUNT,
    ANDROID_APP,
    DATA_KEY,
    DR_ANDROID_APP,
    DR_DATA_KEY,
    DR_IOS_APP,
    DR_REGION,
    EVERYTHING,
    IOS_APP,
    POOL_ARN,
    REGION,
    REQUIRED,
    SCENARIOS,
    TEMPLATES,
    Stack,
    all_stacks,
    raw,
    stack,
)

# Actions with no resource-level permissions: "*" is the only Resource AWS accepts for
# them (Service Authorization Reference, "Resource types" column empty). Only what the
# templates use; each must also be narrowed by a condition where AWS offers one.
UNSCOPABLE_ACTIONS = {
    "cloudwatch:PutMetricData": "cloudwatch:namespace",
}

# The one role that may be allowed "Action": "*".
BREAK_GLASS = ("iam.yml", "BreakGlassRole")

# AWS managed policies (arn:aws:iam::aws:policy/<name>) and the only roles that may carry
# each. Their documents are AWS's, not in these templates, hence listed by name.
MANAGED_POLICIES: dict[str, set[tuple[str, str]]] = {
    # Source bundle download, log streaming, enhanced health reporting.
    "AWSElasticBeanstalkWebTier": {
        ("iam.yml", "WebInstanceRole"),
        ("iam.yml", "WorkerInstanceRole"),
    },
    # The service role's two documented policies.
    "service-role/AWSElasticBeanstalkEnhancedHealth": {("iam.yml", "ServiceRole")},
    "AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy": {("iam.yml", "ServiceRole")},
    # Read-only people: configuration, metrics, logs, EB status (data and secrets denied).
    "job-function/ViewOnlyAccess": {("iam.yml", "ReadOnlyRole")},
    "CloudWatchReadOnlyAccess": {("iam.yml", "ReadOnlyRole")},
    "AWSElasticBeanstalkReadOnly": {("iam.yml", "ReadOnlyRole")},
    # An EB environment update rewrites the environment's CloudFormation stack (instances,
    # Auto Scaling, load balancer) with the caller's permissions: AWS's deployer policy,
    # fenced in by the role's Deny statements (checked below).
    "AdministratorAccess-AWSElasticBeanstalk": {("pipeline.yml", "DeployActionRole")},
}
HUMAN_ROLES = {"DeployRole", "ReadOnlyRole", "BreakGlassRole"}
POLICY_PROPERTIES = {
    "AWS::IAM::Role": ("AssumeRolePolicyDocument", "Policies"),
    "AWS::IAM::ManagedPolicy": ("PolicyDocument",),
    "AWS::IAM::Policy": ("PolicyDocument",),
    "AWS::KMS::Key": ("KeyPolicy",),
    "AWS::S3::BucketPolicy": ("PolicyDocument",),
    "AWS::SNS::TopicPolicy": ("PolicyDocument",),
    "AWS::SQS::QueuePolicy": ("PolicyDocument",),
    "AWS::SecretsManager::ResourcePolicy": ("ResourcePolicy",),
}


@dataclass(frozen=True)
class Policy:
    template: str
    scenario: str
    logical: str
    kind: str  # trust | identity | key | resource
    document: dict[str, Any]

    @property
    def statements(self) -> list[dict[str, Any]]:
        return as_list(self.document["Statement"])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def scenario_of(item: Stack) -> str:
    return next(s for s in SCENARIOS if stack(item.name, s) is item)


def policies_in(item: Stack) -> Iterator[Policy]:
    scenario = scenario_of(item)
    for logical, resource in item.resources.items():
        kind, props = resource["Type"], item.properties(logical)

        def policy(role: str, document: dict[str, Any], logical: str = logical) -> Policy:
            return Policy(item.name, scenario, logical, role, document)

        if kind == "AWS::IAM::Role":
            yield policy("trust", props["AssumeRolePolicyDocument"])
            for inline in props.get("Policies", []):
                yield policy("identity", inline["PolicyDocument"])
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            yield policy("identity", props["PolicyDocument"])
        elif kind == "AWS::KMS::Key":
            yield policy("key", props["KeyPolicy"])
        elif kind == "AWS::SecretsManager::ResourcePolicy":
            yield policy("resource", props["ResourcePolicy"])
        elif kind in POLICY_PROPERTIES:
            yield policy("resource", props["PolicyDocument"])


POLICIES = [policy for item in all_stacks() for policy in policies_in(item)]


def allows(*kinds: str) -> Iterator[tuple[Policy, dict[str, Any]]]:
    for policy in POLICIES:
        if policy.kind in kinds:
            for statement in policy.statements:
                if statement["Effect"] == "Allow":
                    yield policy, statement


def is_break_glass(policy: Policy) -> bool:
    return (policy.template, policy.logical) == BREAK_GLASS


def where(policy: Policy, statement: dict[str, Any]) -> str:
    return f"{policy.template} [{policy.scenario}] {policy.logical} {statement.get('Sid', '')}"


# ================================================================== coverage of the checks
@pytest.mark.parametrize("name", TEMPLATES)
def test_every_policy_document_in_the_templates_is_checked(name: str) -> None:
    """A policy somewhere these checks do not look would escape them."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "Statement" in node:
                found.append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")

    for logical, resource in raw(name)["Resources"].items():
        walk(resource.get("Properties", {}), logical)
        for path in found:
            prop = path.removeprefix(logical + ".").split(".")[0].split("[")[0]
            assert prop in POLICY_PROPERTIES.get(resource["Type"], ()), path
        found.clear()


def test_the_checks_have_something_to_check() -> None:
    kinds = {policy.kind for policy in POLICIES}
    assert kinds == {"trust", "identity", "key", "resource"}
    assert len({(p.template, p.logical) for p in POLICIES if p.kind == "identity"}) >= 9


# ================================================================== the general rules
def test_action_star_is_allowed_only_to_the_break_glass_role() -> None:
    seen = False
    for policy, statement in allows("identity", "key", "resource"):
        if "*" in as_list(statement.get("Action", [])):
            assert is_break_glass(policy), where(policy, statement)
            seen = True
    assert seen, "the break-glass role is an administrator"


def test_no_allow_inverts_its_action_or_resource() -> None:
    for policy, statement in allows("identity", "key", "resource", "trust"):
        assert "NotAction" not in statement, where(policy, statement)
        assert "NotResource" not in statement, where(policy, statement)
        assert "NotPrincipal" not in statement, where(policy, statement)


def test_resource_star_only_for_actions_aws_cannot_scope() -> None:
    used = set()
    for policy, statement in allows("identity", "resource"):
        if is_break_glass(policy) or "*" not in as_list(statement["Resource"]):
            continue
        assert as_list(statement["Resource"]) == ["*"], where(policy, statement)
        for action in as_list(statement["Action"]):
            assert action in UNSCOPABLE_ACTIONS, (where(policy, statement), action)
            condition_key = UNSCOPABLE_ACTIONS[action]
            conditions = statement.get("Condition", {})
            assert any(condition_key in keys for keys in conditions.values()), (
                f"{where(policy, statement)}: {action} on * without a {condition_key} condition"
            )
            used.add(action)
    assert used == set(UNSCOPABLE_ACTIONS), "keep the allow-list to what is used"


def test_key_policies_let_services_use_the_key_only_on_this_accounts_behalf() -> None:
    """In a key policy "Resource": "*" means the key itself; the principal is what counts."""
    for policy, statement in allows("key"):
        principal = statement["Principal"]
        if principal.get("AWS") == f"arn:aws:iam::{ACCOUNT}:root":
            assert statement["Action"] == "kms:*"  # administration stays with the account
            assert "Condition" not in statement
            continue
        assert set(principal) == {"Service"}, where(policy, statement)
        assert statement.get("Condition"), where(policy, statement)
        assert "kms:*" not in as_list(statement["Action"]), where(policy, statement)


def test_identity_policies_name_exact_actions() -> None:
    for policy, statement in allows("identity"):
        if is_break_glass(policy):
            continue
        for action in as_list(statement["Action"]):
            service, _, name = action.partition(":")
            assert service and name and "*" not in name and "?" not in name, (
                where(policy, statement),
                action,
            )


def test_every_allowed_resource_is_in_this_account_and_region() -> None:
    regions = {REGION, DR_REGION}
    for policy, statement in allows("identity"):
        if is_break_glass(policy):
            continue
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                continue  # test_resource_star_only_for_actions_aws_cannot_scope
            if resource.startswith("<"):  # a resource of the same stack (no fixed name)
                logical = resource[1:].split(">")[0].split(".")[0]
                assert logical in raw(policy.template)["Resources"], resource
                continue
            assert resource.startswith("arn:aws:"), (where(policy, statement), resource)
            _, _, service, region, account, rest = resource.split(":", 5)
            if service == "s3":
                assert region == account == "" and f"-{ACCOUNT}" in rest, resource
            elif service == "iam":
                assert region == "" and account == ACCOUNT, resource
            else:
                assert region in regions and account == ACCOUNT, (
                    where(policy, statement),
                    resource,
                )
            assert "*" not in rest.split("/")[0].split(":")[0] or service in ("sqs", "dynamodb"), (
                where(policy, statement),
                resource,
            )


def test_no_resource_policy_allows_everyone() -> None:
    for policy, statement in allows("resource", "key"):
        principal = statement["Principal"]
        assert principal != "*" and "*" not in as_list(principal.get("AWS", [])), where(
            policy, statement
        )


def test_trust_policies_name_who_and_people_need_mfa() -> None:
    roles = {}
    for policy in POLICIES:
        if policy.kind != "trust":
            continue
        (statement,) = policy.statements
        principal = statement["Principal"]
        assert statement["Action"] == "sts:AssumeRole"
        assert principal != "*" and "*" not in as_list(principal.get("AWS", []))
        condition = statement.get("Condition", {})
        if "AWS" in principal:
            # An account (or a person's role) as principal: a condition narrows who.
            assert condition, where(policy, statement)
        if policy.logical in HUMAN_ROLES:
            assert condition["Bool"] == {"aws:MultiFactorAuthPresent": "true"}
        roles[(policy.template, policy.logical)] = (principal, condition)
    assert roles[BREAK_GLASS][1]["NumericLessThan"] == {"aws:MultiFactorAuthAge": "3600"}
    service_role = roles[("iam.yml", "ServiceRole")]
    assert service_role == (
        {"Service": "elasticbeanstalk.amazonaws.com"},
        {"StringEquals": {"sts:ExternalId": "elasticbeanstalk"}},
    )
    for role in ("WebInstanceRole", "WorkerInstanceRole"):
        assert roles[("iam.yml", role)][0] == {"Service": "ec2.amazonaws.com"}
    deploy_action = roles[("pipeline.yml", "DeployActionRole")][1]
    assert deploy_action == {
        "ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/trellis-codepipeline"}
    }


def test_people_get_short_sessions_and_break_glass_the_shortest() -> None:
    item = stack("iam.yml")
    durations = {r: item.properties(r)["MaxSessionDuration"] for r in HUMAN_ROLES}
    assert durations["BreakGlassRole"] <= 3600
    assert all(d <= 12 * 3600 for d in durations.values())


def test_managed_policies_only_where_listed() -> None:
    used: dict[str, set[tuple[str, str]]] = {}
    for item in all_stacks():
        for logical, props in item.of_type("AWS::IAM::Role"):
            for arn in props.get("ManagedPolicyArns", []):
                name = arn.removeprefix("arn:aws:iam::aws:policy/")
                assert name != arn, f"{logical}: only AWS managed policies, got {arn}"
                assert (item.name, logical) in MANAGED_POLICIES.get(name, set()), (logical, name)
                used.setdefault(name, set()).add((item.name, logical))
        assert not list(item.of_type("AWS::IAM::ManagedPolicy"))
    assert used == MANAGED_POLICIES
    # Not AWSElasticBeanstalkWorkerTier: it allows SQS on every queue in the account.
    assert "AWSElasticBeanstalkWorkerTier" not in used


# ================================================================== the instance roles
def grants(item: Stack, logical: str) -> dict[str, set[str]]:
    """action -> resources an inline policy of the role allows."""
    result: dict[str, set[str]] = {}
    for inline in item.properties(logical).get("Policies", []):
        for statement in as_list(inline["PolicyDocument"]["Statement"]):
            if statement["Effect"] == "Allow":
                for action in as_list(statement["Action"]):
                    result.setdefault(action, set()).update(as_list(statement["Resource"]))
    return result


def expected_web(dr: bool) -> dict[str, set[str]]:
    buckets = [f"arn:aws:s3:::trellis-prod-uploads-{ACCOUNT}"]
    keys, apps, regions = [DATA_KEY], [IOS_APP, ANDROID_APP], [REGION]
    if dr:
        buckets.append(f"arn:aws:s3:::trellis-prod-uploads-{ACCOUNT}-{DR_REGION}")
        keys.append(DR_DATA_KEY)
        apps += [DR_IOS_APP, DR_ANDROID_APP]
        regions.append(DR_REGION)
    users = {f"{b}/users/*" for b in buckets}
    endpoints = {a.replace(":app/", ":endpoint/") + "/*" for a in apps}
    secrets = {
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:trellis/prod/database-url-??????",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:trellis/prod/database-read-url-??????",
    }
    if dr:
        secrets.add(
            f"arn:aws:secretsmanager:{DR_REGION}:{ACCOUNT}:secret:trellis/prod/database-url-??????"
        )
    logs = {
        f"arn:aws:logs:{r}:{ACCOUNT}:log-group:/aws/elasticbeanstalk/trellis-prod/*"
        for r in regions
    }
    return {
        "s3:PutObject": users,
        "s3:GetObject": users,
        "s3:DeleteObject": users,
        "s3:AbortMultipartUpload": users,
        "s3:DeleteObjectVersion": users,
        "s3:ListBucket": set(buckets),
        "s3:ListBucketVersions": set(buckets),
        "kms:Encrypt": set(keys),
        "kms:Decrypt": set(keys),
        "kms:GenerateDataKey": set(keys),
        "sns:CreatePlatformEndpoint": set(apps),
        "sns:GetEndpointAttributes": endpoints,
        "sns:SetEndpointAttributes": endpoints,
        "sns:DeleteEndpoint": endpoints,
        "sns:Publish": endpoints,
        "cognito-idp:AdminGetUser": {POOL_ARN},
        "cognito-idp:AdminAddUserToGroup": {POOL_ARN},
        "cognito-idp:AdminRemoveUserFromGroup": {POOL_ARN},
        "cognito-idp:AdminDisableUser": {POOL_ARN},
        "cognito-idp:AdminEnableUser": {POOL_ARN},
        "cognito-idp:AdminDeleteUser": {POOL_ARN},
        "cognito-idp:ListUsers": {POOL_ARN},
        "secretsmanager:GetSecretValue": secrets,
        "logs:CreateLogStream": logs,
        "logs:PutLogEvents": logs,
        "logs:DescribeLogStreams": logs,
        "cloudwatch:PutMetricData": {"*"},
    }


def expected_worker(dr: bool) -> dict[str, set[str]]:
    web = expected_web(dr)
    regions = [REGION, DR_REGION] if dr else [REGION]
    exports = {f"arn:aws:s3:::trellis-prod-exports-{ACCOUNT}/exports/*"}
    if dr:
        exports.add(f"arn:aws:s3:::trellis-prod-exports-{ACCOUNT}-{DR_REGION}/exports/*")
    queues = {f"arn:aws:sqs:{r}:{ACCOUNT}:awseb-e-*-stack-AWSEBWorker*" for r in regions}
    tables = {
        f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/awseb-e-*-stack-AWSEBWorkerCronLeaderRegistry*"
        for r in regions
    }
    logs = {r.replace("/trellis-prod/", "/trellis-prod-worker/") for r in web["logs:PutLogEvents"]}
    sqs = ["ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "SendMessage"]
    sqs += ["GetQueueAttributes", "GetQueueUrl"]
    dynamodb = ["BatchGetItem", "BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query"]
    dynamodb += ["Scan", "UpdateItem"]
    return {
        "s3:DeleteObject": web["s3:DeleteObject"] | exports,
        "s3:PutObject": web["s3:PutObject"] | exports,
        "s3:AbortMultipartUpload": web["s3:AbortMultipartUpload"] | exports,
        "s3:GetObject": web["s3:GetObject"],
        "s3:DeleteObjectVersion": web["s3:DeleteObjectVersion"],
        "s3:ListBucket": web["s3:ListBucket"],
        "s3:ListBucketVersions": web["s3:ListBucketVersions"],
        "cognito-idp:AdminGetUser": {POOL_ARN},
        "cognito-idp:AdminDeleteUser": {POOL_ARN},
        "cognito-idp:ListUsers": {POOL_ARN},
        "sns:DeleteEndpoint": web["sns:DeleteEndpoint"],
        "kms:Encrypt": web["kms:Encrypt"],
        "kms:Decrypt": web["kms:Decrypt"],
        "kms:GenerateDataKey": web["kms:GenerateDataKey"],
        "sns:Publish": web["sns:Publish"],
        "secretsmanager:GetSecretValue": web["secretsmanager:GetSecretValue"],
        "logs:CreateLogStream": logs,
        "logs:PutLogEvents": logs,
        "logs:DescribeLogStreams": logs,
        "cloudwatch:PutMetricData": {"*"},
        **{f"sqs:{a}": queues for a in sqs},
        **{f"dynamodb:{a}": tables for a in dynamodb},
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_web_instances_touch_only_their_own_resources(scenario: str) -> None:
    assert grants(stack("iam.yml", scenario), "WebInstanceRole") == expected_web(
        scenario == "everything"
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_worker_instances_touch_only_their_own_resources(scenario: str) -> None:
    assert grants(stack("iam.yml", scenario), "WorkerInstanceRole") == expected_worker(
        scenario == "everything"
    )


def test_a_worker_queue_given_by_arn_is_the_only_queue() -> None:
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:trellis-prod-worker"
    item = Stack("iam.yml", REQUIRED["iam.yml"] | {"WorkerQueueArn": queue})
    assert grants(item, "WorkerInstanceRole")["sqs:ReceiveMessage"] == {queue}


@pytest.mark.parametrize("role", ["WebInstanceRole", "WorkerInstanceRole"])
def test_uploads_listing_is_held_to_the_users_prefix(role: str) -> None:
    for scenario in SCENARIOS:
        properties = stack("iam.yml", scenario).properties(role)
        (statement,) = [
            s
            for s in properties["Policies"][0]["PolicyDocument"]["Statement"]
            if "s3:ListBucket" in as_list(s["Action"])
        ]
        assert set(as_list(statement["Action"])) == {"s3:ListBucket", "s3:ListBucketVersions"}
        assert statement["Condition"] == {"StringLikeIfExists": {"s3:prefix": ["users/*"]}}


def test_the_instances_read_the_app_secrets_and_not_the_master_secret() -> None:
    foundation = stack("foundation.yml").outputs()
    patterns = expected_web(dr=False)["secretsmanager:GetSecretValue"]
    for output in ("DatabaseUrlSecretArn", "DatabaseReadUrlSecretArn"):
        assert any(fnmatch.fnmatchcase(foundation[output], p) for p in patterns), output
    master = foundation["DatabaseMasterSecretArn"]
    assert not any(fnmatch.fnmatchcase(master, p) for p in patterns)


def test_instance_roles_use_the_key_the_buckets_and_secrets_are_encrypted_with() -> None:
    foundation = stack("foundation.yml")
    key = foundation.outputs()["DataKeyArn"]
    (bucket_key,) = {
        p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]["KMSMasterKeyID"]
        for logical, p in foundation.of_type("AWS::S3::Bucket")
        if logical != "StaticAssetsBucket"
    }
    assert key == bucket_key
    # iam.yml takes that output as DataKeyArn and grants exactly it.
    assert grants(stack("iam.yml"), "WebInstanceRole")["kms:Decrypt"] == {DATA_KEY}


# ================================================================== people and pipelines
def test_the_deploy_role_runs_the_pipeline_and_changes_nothing() -> None:
    item = stack("iam.yml")
    granted = grants(item, "DeployRole")
    assert {action.split(":")[0] for action in granted} == {"codepipeline", "codebuild", "logs"}
    pipeline = stack("pipeline.yml")
    name = pipeline.properties("Pipeline")["Name"]
    assert granted["codepipeline:StartPipelineExecution"] == {
        f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:{name}"
    }
    approve = next(s for s in pipeline.properties("Pipeline")["Stages"] if s["Name"] == "Approve")
    assert granted["codepipeline:PutApprovalResult"] == {
        f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:{name}/{approve['Name']}/*"
    }
    project = pipeline.properties("TestProject")["Name"]
    assert granted["codebuild:BatchGetBuilds"] == {
        f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/{project}"
    }
    writes = [a for a in granted if not a.split(":")[1].startswith(("Get", "List", "BatchGet"))]
    assert sorted(writes) == [
        "codepipeline:PutApprovalResult",
        "codepipeline:RetryStageExecution",
        "codepipeline:StartPipelineExecution",
        "codepipeline:StopPipelineExecution",
        "logs:FilterLogEvents",
    ]
    statements = item.properties("DeployRole")["Policies"][0]["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert {"cloudformation:*", "iam:*", "elasticbeanstalk:Update*"} <= set(deny["Action"])


def test_the_read_only_role_cannot_read_data_or_secrets() -> None:
    role = stack("iam.yml").properties("ReadOnlyRole")
    (statement,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Resource"] == "*"
    assert {"s3:GetObject", "secretsmanager:GetSecretValue", "kms:Decrypt"} <= set(
        statement["Action"]
    )


def test_the_pipelines_eb_deployer_is_fenced_in() -> None:
    for scenario in SCENARIOS:
        role = stack("pipeline.yml", scenario).properties("DeployActionRole")
        statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        denies = {s["Sid"]: s for s in statements if s["Effect"] == "Deny"}
        assert (
            denies["PassOnlyTrellisRoles"]["NotResource"]
            == (REQUIRED["pipeline.yml"]["PassableRoleArns"])
        )
        assert denies["OnlyEnvironmentStacks"]["NotResource"] == (
            f"arn:aws:cloudformation:*:{ACCOUNT}:stack/awseb-e-*"
        )
        assert "iam:Put*" in denies["NoIdentityChanges"]["Action"]
        assert "rds:Delete*" in denies["NeverTheData"]["Action"]
        assert denies["NeverTheDataBuckets"]["Action"] == "s3:*"
        allowed = {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}
        assert allowed == {"s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"}


def test_passable_roles_are_the_roles_iam_yml_creates() -> None:
    iam = stack("iam.yml").outputs()
    assert set(REQUIRED["pipeline.yml"]["PassableRoleArns"]) == {
        iam["ServiceRoleArn"],
        iam["WebInstanceRoleArn"],
        iam["WorkerInstanceRoleArn"],
    }


def test_s3_replication_reads_the_primary_buckets_and_writes_the_dr_buckets() -> None:
    granted = grants(stack("dr.yml"), "ReplicationRole")
    sources = {f"arn:aws:s3:::trellis-prod-{kind}-{ACCOUNT}" for kind in ("uploads", "exports")}
    targets = {f"{s}-{DR_REGION}" for s in sources}
    assert granted["s3:GetReplicationConfiguration"] == sources
    assert granted["s3:GetObjectVersionForReplication"] == {f"{s}/*" for s in sources}
    assert granted["s3:ReplicateObject"] == {f"{t}/*" for t in targets}
    assert granted["kms:Decrypt"] == {REQUIRED["dr.yml"]["PrimaryDataKeyArn"]}
    assert granted["kms:Encrypt"] == {f"arn:aws:kms:{DR_REGION}:{ACCOUNT}:key/<DataKey>"}
    role = stack("dr.yml").properties("ReplicationRole")
    for statement in role["Policies"][0]["PolicyDocument"]["Statement"]:
        if statement["Action"] in ("kms:Decrypt", ["kms:Encrypt", "kms:GenerateDataKey"]):
            assert "kms:ViaService" in statement["Condition"]["StringEquals"]
    assert (
        EVERYTHING["foundation.yml"]["ReplicationRoleArn"]
        == stack("dr.yml").outputs()["ReplicationRoleArn"]
    )
