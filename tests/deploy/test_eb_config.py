"""Offline proof of the Elastic Beanstalk configuration: it parses, names only documented
options, holds the settings production needs, and its Resources pass cfn-lint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.bundle import build
from services.accounts.auth import MAX_TOKEN_BYTES
from services.base.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
EBEXTENSIONS = sorted((ROOT / ".ebextensions").glob("*.config"))
SAVED = {
    p.name.removesuffix(".cfg.yml"): p
    for p in (ROOT / ".elasticbeanstalk/saved_configs").glob("*.cfg.yml")
}
WEB_CONFIGS = ("dev", "test", "prod")
ALLOWED = yaml.safe_load((Path(__file__).parent / "eb_options.yml").read_text())
TOP_LEVEL = {
    "option_settings",
    "Resources",
    "container_commands",
    "commands",
    "files",
    "packages",
    "Outputs",
}
SECRET_NAMES = {"DATABASE_URL", "DATABASE_READ_URL"}


def load(path: Path) -> dict[str, Any]:
    # safe_load: .ebextensions accepts only long-form intrinsics; a `!Ref` would fail here.
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def option_settings(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    settings = document.get("option_settings") or document.get("OptionSettings") or {}
    if isinstance(settings, list):  # the list form: [{namespace, option_name, value}]
        merged: dict[str, dict[str, Any]] = {}
        for item in settings:
            merged.setdefault(item["namespace"], {})[item["option_name"]] = item["value"]
        return merged
    return settings


def merged(*names: str) -> dict[str, dict[str, Any]]:
    """What an environment ends up with: .ebextensions, then its saved config on top."""
    result: dict[str, dict[str, Any]] = {}
    for path in EBEXTENSIONS:
        for namespace, options in option_settings(load(path)).items():
            result.setdefault(namespace, {}).update(options)
    for name in names:
        for namespace, options in option_settings(load(SAVED[name])).items():
            result.setdefault(namespace, {}).update(options)
    return result


def test_there_is_a_file_per_concern() -> None:
    names = " ".join(p.name for p in EBEXTENSIONS)
    for concern in (
        "environment",
        "loadbalancer",
        "autoscaling",
        "logs",
        "app-settings",
        "database",
        "migrations",
        "alarms",
    ):
        assert concern in names
    for path in EBEXTENSIONS:
        assert path.read_text().startswith("#"), f"{path.name} needs a comment on top"


@pytest.mark.parametrize("path", EBEXTENSIONS + sorted(SAVED.values()), ids=lambda p: p.name)
def test_every_option_is_documented(path: Path) -> None:
    document = load(path)
    if path.suffix == ".config":
        assert set(document) <= TOP_LEVEL, set(document) - TOP_LEVEL
    for namespace, options in option_settings(document).items():
        assert namespace in ALLOWED, f"{path.name}: unknown namespace {namespace}"
        allowed = ALLOWED[namespace]
        if allowed != ["*"]:
            unknown = set(options) - set(allowed)
            assert not unknown, f"{path.name}: unknown options {unknown} in {namespace}"


def test_production_web_tier_settings() -> None:
    prod = merged("prod")
    assert prod["aws:elasticbeanstalk:environment"]["EnvironmentType"] == "LoadBalanced"
    assert prod["aws:elasticbeanstalk:environment"]["LoadBalancerType"] == "application"
    assert prod["aws:elasticbeanstalk:healthreporting:system"]["SystemType"] == "enhanced"
    assert prod["aws:elasticbeanstalk:command"]["DeploymentPolicy"] in (
        "RollingWithAdditionalBatch",
        "Immutable",
    )
    assert prod["aws:elasticbeanstalk:managedactions"]["ManagedActionsEnabled"] is True
    listener = prod["aws:elbv2:listener:443"]
    assert listener["Protocol"] == "HTTPS" and "TLS13" in listener["SSLPolicy"]
    assert listener["SSLCertificateArns"].startswith("arn:aws:acm:")
    process = prod["aws:elasticbeanstalk:environment:process:default"]
    assert process["HealthCheckPath"] == "/healthz" and 0 < process["DeregistrationDelay"] < 30
    asg = prod["aws:autoscaling:asg"]
    assert (
        asg["MinSize"] >= 2 and asg["MaxSize"] > asg["MinSize"] and "2" in asg["Availability Zones"]
    )
    assert prod["aws:autoscaling:trigger"]["MeasureName"] == "CPUUtilization"
    assert prod["aws:autoscaling:launchconfiguration"]["DisableIMDSv1"] is True
    assert all(t.endswith(".large") for t in prod["aws:ec2:instances"]["InstanceTypes"].split(","))
    logs = prod["aws:elasticbeanstalk:cloudwatch:logs"]
    assert logs["StreamLogs"] is True and logs["RetentionInDays"] > 0
    assert prod["aws:elasticbeanstalk:cloudwatch:logs:health"]["HealthStreamingEnabled"] is True
    assert not any(ns.startswith("aws:rds") for ns in prod), "the database must stay decoupled"


def test_http_redirects_to_https_through_the_listener_override() -> None:
    resources = load(ROOT / ".ebextensions/02-web-loadbalancer.config")["Resources"]
    listener = resources["AWSEBV2LoadBalancerListener"]["Properties"]
    assert listener["Port"] == 80
    action = listener["DefaultActions"][0]
    assert action["Type"] == "redirect"
    assert (
        action["RedirectConfig"]["Protocol"] == "HTTPS"
        and action["RedirectConfig"]["StatusCode"] == "HTTP_301"
    )


def test_migrations_run_once_per_deploy() -> None:
    commands = load(ROOT / ".ebextensions/07-migrations.config")["container_commands"]
    (command,) = commands.values()
    assert command["leader_only"] is True and "alembic upgrade head" in command["command"]


def test_queued_connections_move_to_another_worker_when_one_exits() -> None:
    """gunicorn.conf.py's reuse_port gives each worker its own queue; tcp_migrate_req keeps a
    worker's exit from resetting the connections queued on it."""
    gunicorn_conf = (ROOT / "gunicorn.conf.py").read_text()
    assert re.search(r"^reuse_port = True$", gunicorn_conf, re.MULTILINE)
    kernel = load(ROOT / ".ebextensions/09-kernel.config")
    (sysctl_file,) = kernel["files"].values()
    assert sysctl_file["content"].split() == ["net.ipv4.tcp_migrate_req", "=", "1"]
    (command,) = kernel["commands"].values()
    assert command["command"] == "sysctl -w net.ipv4.tcp_migrate_req=1"


@pytest.mark.parametrize("name", sorted(SAVED))
def test_saved_configuration(name: str) -> None:
    document = load(SAVED[name])
    assert document["AWSConfigurationTemplateVersion"] == "1.1.0.0"
    assert (
        "Python 3.1" in document["Platform"]["PlatformArn"]
        and "Amazon Linux 2023" in document["Platform"]["PlatformArn"]
    )
    settings = option_settings(document)
    plain = settings.get("aws:elasticbeanstalk:application:environment", {})
    assert not SECRET_NAMES & set(plain), "secrets come from Secrets Manager, never plain settings"
    secrets = settings["aws:elasticbeanstalk:application:environmentsecrets"]
    assert secrets["DATABASE_URL"].startswith("arn:aws:secretsmanager:")
    # The service itself accepts the environment this configuration produces.
    environment = {
        k: str(v) for k, v in merged(name)["aws:elasticbeanstalk:application:environment"].items()
    }
    environment["DATABASE_URL"] = "postgresql://trellis@db.internal:5432/trellis"
    assert load_settings(environment).app_env == "production"


def test_dev_is_cheap_and_prod_highly_available() -> None:
    dev, prod = merged("dev"), merged("prod")
    assert dev["aws:autoscaling:asg"]["MinSize"] == dev["aws:autoscaling:asg"]["MaxSize"] == 1
    assert prod["aws:autoscaling:asg"]["MinSize"] >= 2
    for name in WEB_CONFIGS:
        assert load(SAVED[name])["EnvironmentTier"]["Name"] == "WebServer"


def test_worker_tier_runs_the_scheduled_jobs() -> None:
    worker = load(SAVED["prod-worker"])
    assert worker["EnvironmentTier"] == {"Name": "Worker", "Type": "SQS/HTTP"}
    environment = option_settings(worker)["aws:elasticbeanstalk:application:environment"]
    assert environment["WORKER_TASKS_ENABLED"] == "true"


def test_cron_yaml_names_routes_that_exist() -> None:
    cron = yaml.safe_load((ROOT / "cron.yaml").read_text())
    assert cron["version"] == 1 and cron["cron"]
    from api import create_app
    from services.components import build_components
    from tests.conftest import make_settings

    settings = make_settings("sqlite://", WORKER_TASKS_ENABLED="true")
    app = create_app(components=build_components(settings))
    routes = {
        (rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods or ()
    }
    names = set()
    for job in cron["cron"]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job["name"]) and job["name"] not in names
        names.add(job["name"])
        assert len(job["schedule"].split()) == 5, job
        assert (job["url"], "POST") in routes, f"{job['url']} is not a POST route"
    assert {"export", "outbox-drain", "uploads-cleanup"} <= names


def test_procfile_gunicorn_and_nginx_agree_on_the_port() -> None:
    procfile = (ROOT / "Procfile").read_text()
    assert re.search(
        r"^web: gunicorn .*--bind 127\.0\.0\.1:8000 .*application:application", procfile, re.M
    )
    namespace: dict[str, Any] = {}
    exec(compile((ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    assert namespace["bind"] == "127.0.0.1:8000"
    nginx = (ROOT / ".platform/nginx/conf.d/trellis.conf").read_text()
    assert "server 127.0.0.1:8000" in nginx


def test_each_worker_freezes_what_importing_the_app_made() -> None:
    """gunicorn calls post_worker_init once the worker has loaded the application: the
    objects made so far leave the cyclic collector's walks (its full passes were (f)'s p99,
    BENCHMARKS.md). Run in a process of its own: the hook freezes whatever process runs it."""
    script = (
        "import gc, runpy, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import api.app  # what a worker imports before the hook\n"
        "hooks = runpy.run_path(sys.argv[1] + '/gunicorn.conf.py')\n"
        "before = gc.get_freeze_count()\n"
        "hooks['post_worker_init'](None)\n"
        "print(before, gc.get_freeze_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, check=True
    )
    before, after = map(int, result.stdout.split())
    assert before == 0 and after > 50_000, result.stdout


def test_gunicorn_nginx_and_trellis_agree_on_header_limits() -> None:
    """nginx refuses in problem+json, gunicorn only in HTML: gunicorn's limits lie above
    nginx's, and an Authorization line with a token of Trellis's maximum fits nginx's."""
    gunicorn: dict[str, Any] = {}
    exec(compile((ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), gunicorn)
    nginx = (ROOT / ".platform/nginx/conf.d/trellis.conf").read_text()
    first = re.search(r"^client_header_buffer_size (\d+)k;$", nginx, re.M)
    large = re.search(r"^large_client_header_buffers (\d+) (\d+)k;$", nginx, re.M)
    assert first and large
    line = int(large[2]) * 1024  # the longest header line nginx passes
    assert len(b"Authorization: Bearer \r\n") + MAX_TOKEN_BYTES < line
    # nginx passes a line a little longer than it took ("a:b" becomes "a: b", X-Forwarded-For
    # gets the client's address appended): twice nginx's line leaves room for that.
    assert gunicorn["limit_request_field_size"] >= 2 * line
    # However many lines nginx's buffers hold, at 4 bytes ("a:\r\n") the shortest.
    held = (int(first[1]) + int(large[1]) * int(large[2])) * 1024
    assert gunicorn["limit_request_fields"] >= held // 4
    # nginx's buffers take longer request lines than gunicorn's maximum: nginx stops them.
    location = (ROOT / ".platform/nginx/conf.d/elasticbeanstalk/00_application.conf").read_text()
    assert gunicorn["limit_request_line"] == 8190 < line
    assert f'if ($request ~ "^.{{{gunicorn["limit_request_line"] + 1}}}")' in location
    for status in (400, 414, 494):  # nginx's own refusals, each a problem+json page
        assert re.search(rf"^error_page {status} (=\d+ )?/_trellis/[a-z-]+;$", location, re.M)


def test_platform_hooks_are_executable() -> None:
    listing = subprocess.run(
        ["git", "ls-files", "-s", ".platform/hooks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert listing, "no hooks found"
    for line in listing:
        assert line.startswith("100755"), line


def test_worker_bundle_leaves_out_the_web_only_files(tmp_path: Path) -> None:
    web = build(tmp_path / "web.zip", tier="web")
    worker = build(tmp_path / "worker.zip", tier="worker")
    web_only = {n for n in web if "-web-" in n and n.startswith(".ebextensions/")}
    assert web_only and not web_only & set(worker)
    assert "cron.yaml" in worker and "Procfile" in worker
    with zipfile.ZipFile(tmp_path / "web.zip") as bundle:
        info = bundle.getinfo(".platform/hooks/postdeploy/01_healthz.sh")
        assert (info.external_attr >> 16) & 0o111, "hooks must stay executable in the bundle"


STUBS = {
    "AWSEBV2LoadBalancer": {
        "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "Properties": {"Subnets": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]},
    },
    "AWSEBV2LoadBalancerTargetGroup": {
        "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Properties": {"Port": 80, "Protocol": "HTTP", "VpcId": "vpc-0123456789abcdef0"},
    },
    # 08-web-alarms.config's topic, which 10-web-app-alarms.config's alarms notify too.
    "OperatorAlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {}},
}


def _no_option_functions(node: Any) -> Any:
    """Fn::GetOptionSetting is EB's, not CloudFormation's: stand in a string for cfn-lint."""
    if isinstance(node, dict):
        if set(node) == {"Fn::GetOptionSetting"}:
            return "option-setting-value"
        return {k: _no_option_functions(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_no_option_functions(v) for v in node]
    return node


@pytest.mark.parametrize(
    "path", [p for p in EBEXTENSIONS if "Resources" in load(p)], ids=lambda p: p.name
)
def test_resources_pass_cfn_lint(path: Path, tmp_path: Path) -> None:
    resources = _no_option_functions(load(path)["Resources"])
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {**{k: v for k, v in STUBS.items() if k not in resources}, **resources},
    }
    wrapped = tmp_path / f"{path.stem}.json"
    wrapped.write_text(json.dumps(template))
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(wrapped)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_long_lived_sockets_outlast_the_ping_everywhere() -> None:
    """The realtime socket pings every REALTIME_PING_SECONDS: the load balancer's idle
    timeout and nginx's timeouts on /v1/realtime must be longer, or a quiet socket is cut;
    nginx must pass the Upgrade to the realtime process's port, the one the Procfile gives."""
    ping = Settings.model_fields["realtime_ping_seconds"].default
    web = yaml.safe_load((ROOT / ".ebextensions/02-web-loadbalancer.config").read_text())
    assert web["option_settings"]["aws:elbv2:loadbalancer"]["IdleTimeout"] > ping
    location = (ROOT / ".platform/nginx/conf.d/elasticbeanstalk/10_realtime.conf").read_text()
    for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
        found = re.search(rf"^\s*{timeout}\s+(\d+)s;", location, re.M)
        assert found and int(found.group(1)) > ping, timeout
    assert "proxy_set_header    Upgrade $http_upgrade;" in location
    upstream = (ROOT / ".platform/nginx/conf.d/realtime.conf").read_text()
    procfile = (ROOT / "Procfile").read_text()
    port = re.search(r"^realtime: python -m realtime .*--port (\d+)$", procfile, re.M)
    assert port and f"server 127.0.0.1:{port.group(1)};" in upstream
    assert Settings.model_fields["realtime_port"].default == int(port.group(1))
