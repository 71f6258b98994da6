"""womm doctor, against a fake cluster answering the raw requests womm makes; and the library checks it uses."""

import http.server
import json
import threading
import time

import pytest

from womm import access, docker_engine, errors, kube, records, registry
from womm_fs import doctor


class FakeCluster(kube.Cluster):
    """A Cluster whose requests are answered by routes: {(method, path): answer, callable, or exception}."""

    def __init__(self, routes=None, namespace="team"):
        self.namespace, self.context, self.connect_timeout = namespace, "ctx", 10
        self.credentials = type("C", (), {"server": "https://api.example:6443", "source": "/fake/kubeconfig"})()
        self.routes = routes if routes is not None else {}
        self.calls = []

    def request(self, method, path, query=None, body=None, timeout=60, content_type=None, idempotent=None):
        self.calls.append((method, path, query, body))
        if path.endswith("selfsubjectaccessreviews"):
            assert idempotent  # a review makes nothing: sent again where its connection was lost
        answer = self.routes.get((method, path))
        if answer is None:
            raise kube.ApiError(404, "Not Found", json.dumps({"message": f"{path} not found"}).encode())
        if callable(answer):
            answer = answer(query, body)
        if isinstance(answer, Exception):
            raise answer
        return answer


def healthy_routes(allowed=lambda rule: True):
    ns = "/namespaces/team"

    def review(query, body):
        a = body["spec"]["resourceAttributes"]
        return {"status": {"allowed": allowed((a["verb"], a["group"], a["resource"], a.get("subresource")))}}

    def create_pod(query, body):
        if not (query or {}).get("dryRun"):  # a test pod of doctor's: it ends at once, as if all went well
            routes[("GET", f"/api/v1{ns}/pods/{body['metadata']['name']}")] = {
                "spec": {"nodeName": "node-1"},
                "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}
        return body

    routes = {
        ("GET", "/version"): {"gitVersion": "v1.34.4"},
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"): review,
        ("GET", f"/apis/apps/v1{ns}/deployments/womm-fs"): {
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "reg/womm:1"}]}}},
            "status": {"availableReplicas": 1}},
        ("GET", f"/api/v1{ns}/services/womm-fs"): {"spec": {"clusterIP": "10.0.0.9"}},
        ("GET", f"/api/v1{ns}/pods"): {"items": []},
        ("GET", f"/api/v1{ns}/configmaps/womm-config"): {"data": {"helper-image": "reg/womm:1"}},
        ("POST", f"/api/v1{ns}/pods"): create_pod,  # a dry run, admitted
        ("DELETE", f"/api/v1{ns}/pods"): {},
        ("GET", f"/api/v1{ns}/limitranges"): {"items": []},
        ("GET", f"/api/v1{ns}/resourcequotas"): {"items": []},
        ("GET", f"/apis/networking.k8s.io/v1{ns}/networkpolicies"): {"items": []},
    }
    return routes


class FakeDocker:
    def version(self):
        return {"Version": "27.0"}

    def close(self):
        pass


@pytest.fixture
def here(tmp_path, monkeypatch, fake_bin):
    """A directory set up with an eager share; GNU parallel, rsync and Docker that answer; images present."""
    d = tmp_path / "proj"
    d.mkdir()
    monkeypatch.chdir(d)
    records.save_project(d, {"share": "eager", "share_id": "abc", "image": "reg/img:1", "namespace": "team",
                             "platform": "linux/arm64"})
    fake_bin("bin", "parallel", 'echo "GNU parallel 20221122"\n')
    rsync = fake_bin("bin", "rsync", 'echo "rsync  version 3.2.7  protocol version 31"\n')
    monkeypatch.setenv("PATH", str(rsync.parent))
    monkeypatch.setattr(docker_engine, "client", lambda timeout=600: FakeDocker())
    monkeypatch.setattr(registry, "manifest", lambda image, timeout=5: (registry.PRESENT, image))
    return d


def use(monkeypatch, cluster):
    def make(context=None, namespace=None):
        cluster.asked = (context, namespace)
        return cluster

    monkeypatch.setattr(kube, "Cluster", make)
    return cluster


def by_name(checks):
    return {c.check: c for c in checks}


def test_all_pass_in_a_set_up_directory(here, monkeypatch):
    cluster = use(monkeypatch, FakeCluster(healthy_routes()))
    checks = doctor.Doctor(None, None, str(here)).run()
    assert [c for c in checks if c.ok is False] == []
    found = by_name(checks)
    assert found["GNU parallel"].ok and "20221122" in found["GNU parallel"].detail
    assert found["rsync"].detail.endswith("(rsync version 3.2.7 protocol version 31)")
    assert found["share server"].ok and found["helper image"].detail == "reg/womm:1"
    assert found["the directory's image in its registry"].detail.endswith("; its pods go to linux/arm64 nodes")
    assert found["lazy share, here"].ok is None and found[doctor.FUSE].ok is None  # eager: does not apply
    assert "namespace team (from the directory's record)" in found["kubeconfig"].detail
    assert cluster.asked == (None, "team")
    reviews = [c for c in cluster.calls if c[1].endswith("selfsubjectaccessreviews")]
    assert len(reviews) == len(access.NEEDS) + len(access.HELPS)
    assert {(r[3]["spec"]["resourceAttributes"]["verb"], r[3]["spec"]["resourceAttributes"].get("subresource"))
            for r in reviews} >= {("create", "exec"), ("get", "exec")}


def test_output_lines_and_exit_status(here, monkeypatch, capsys):
    from womm_fs import cli

    use(monkeypatch, FakeCluster(healthy_routes()))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    assert exit_.value.code == 0
    assert len(lines) == 14
    assert all(line[:5] in ("ok   ", "skip ") for line in lines), lines
    assert "skip rsync" not in lines


def test_json_is_a_list_of_checks(here, monkeypatch, capsys):
    from womm_fs import cli

    use(monkeypatch, FakeCluster(healthy_routes(allowed=lambda rule: rule[2] != "secrets")))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["doctor", "-o", "json", "--namespace", "other"])
    assert exit_.value.code == 1
    checks = json.loads(capsys.readouterr().out)
    assert all(set(c) == {"check", "ok", "detail", "fix"} for c in checks)
    permissions = next(c for c in checks if c["check"] == "permissions")
    assert permissions["ok"] is False
    assert "create secrets, get secrets, update secrets" in permissions["detail"]
    assert permissions["fix"]


def test_without_reading_events_the_permissions_pass_and_say_what_is_slower(here, monkeypatch):
    use(monkeypatch, FakeCluster(healthy_routes(allowed=lambda rule: rule[2] != "events")))
    check = by_name(doctor.Doctor(None, None, str(here)).run())["permissions"]
    assert check.ok
    assert check.detail == (f"all {len(access.NEEDS)} womm needs, in namespace team; not list events, watch events: "
                            "trying each pod as the kubelet starts it (else on a timer)")


def test_missing_permissions_are_listed_in_one_line(here, monkeypatch):
    use(monkeypatch, FakeCluster(healthy_routes(allowed=lambda rule: rule[3] != "exec")))
    line = by_name(doctor.Doctor(None, None, str(here)).run())["permissions"].line()
    assert line.startswith("FAIL permissions: not allowed in namespace team: create pods/exec, get pods/exec;")


def test_share_server_scaled_to_zero(here, monkeypatch):
    routes = healthy_routes()
    routes[("GET", "/apis/apps/v1/namespaces/team/deployments/womm-fs")] = {"spec": {"replicas": 0}, "status": {}}
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())["share server"]
    assert check.ok is False and "scaled to 0" in check.detail
    assert "womm cluster-setup --apply --namespace team" in check.fix


def test_share_server_names_its_pods_reason(here, monkeypatch):
    routes = healthy_routes()
    routes[("GET", "/apis/apps/v1/namespaces/team/deployments/womm-fs")] = {"spec": {"replicas": 1}, "status": {}}
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "reg/womm:1"'}
    routes[("GET", "/api/v1/namespaces/team/pods")] = {"items": [{
        "metadata": {"name": "womm-fs-1"},
        "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": waiting}}]}}]}
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())["share server"]
    assert check.detail == 'its pod: ImagePullBackOff: Back-off pulling image "reg/womm:1"'
    assert "womm build-images" in check.fix


def test_share_server_without_the_right_to_read_deployments(here, monkeypatch):
    routes = healthy_routes()
    routes[("GET", "/apis/apps/v1/namespaces/team/deployments/womm-fs")] = kube.ApiError(403, "Forbidden")
    routes[("GET", "/api/v1/namespaces/team/pods")] = {"items": [{
        "metadata": {"name": "womm-fs-1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]}
    use(monkeypatch, FakeCluster(routes))
    assert by_name(doctor.Doctor(None, None, str(here)).run())["share server"].ok


def test_no_share_server(here, monkeypatch):
    routes = healthy_routes()
    del routes[("GET", "/apis/apps/v1/namespaces/team/deployments/womm-fs")]
    del routes[("GET", "/api/v1/namespaces/team/configmaps/womm-config")]
    use(monkeypatch, FakeCluster(routes))
    found = by_name(doctor.Doctor(None, None, str(here)).run())
    assert found["share server"].detail == "no Deployment womm-fs in namespace team"
    assert "womm build-images" in found["helper image"].fix
    assert "womm doctor" not in found["helper image"].line()  # the hint is for the other programs' errors


def test_missing_kubeconfig_is_one_line_naming_it(here, monkeypatch, tmp_path, capsys):
    from womm_fs import cli

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere" / "config"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["doctor"])
    out = capsys.readouterr()
    assert exit_.value.code == 1
    line = next(line for line in out.out.splitlines() if line.startswith("FAIL kubeconfig: "))
    assert str(tmp_path / "nowhere" / "config") in line
    assert "skip permissions: no cluster to ask" in out.out
    assert "Traceback" not in out.out + out.err


@pytest.mark.parametrize("text, expect", [
    ("apiVersion: v1\nclusters: [\n", "is not YAML"),
    ("- a\n- b\n", "is not a kubeconfig"),
    ("current-context: x\ncontexts: []\n", "no context 'x'"),
])
def test_broken_kubeconfig(here, monkeypatch, tmp_path, text, expect):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(path))
    check = by_name(doctor.Doctor(None, None, str(here)).run())["kubeconfig"]
    assert check.ok is False and expect in check.detail and "\n" not in check.detail


def test_unreachable_api_server_fails_fast(here, monkeypatch, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(path))
    start = time.monotonic()
    found = by_name(doctor.Doctor(None, None, str(here)).run())
    assert time.monotonic() - start < 10
    assert found["API server"].ok is False and "Connection refused" in found["API server"].detail
    assert found["permissions"].ok is None


def test_a_check_that_hangs_is_cut_short():
    start = time.monotonic()
    check = doctor.Later("slow thing", 0.2, time.sleep, 30).result()
    assert time.monotonic() - start < 2
    assert check.line() == ("FAIL slow thing: no answer within 0.2 s; something there hangs: try again, "
                            "or look at it by hand")


def test_gnu_parallel_is_not_moreutils_parallel(here, monkeypatch, fake_bin):
    fake_bin("bin", "parallel", "echo 'parallel [OPTIONS] command -- arguments'\n")
    check = doctor.Doctor(None, None, str(here)).check_parallel()
    assert check.ok is False and "not GNU parallel" in check.detail and "apt-get install parallel" in check.fix


def test_nothing_on_path(here, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    d = doctor.Doctor(None, None, str(here))
    d.check_project()
    assert "apt-get install parallel" in d.check_parallel().line()
    assert "apt-get install rsync" in d.check_rsync().line()


def test_docker_socket_not_ours(monkeypatch):
    import os

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    real_exists, real_access = os.path.exists, os.access
    monkeypatch.setattr(os.path, "exists", lambda p: p == docker_engine.DEFAULT_SOCKET or real_exists(p))
    monkeypatch.setattr(os, "access", lambda p, mode: p != docker_engine.DEFAULT_SOCKET and real_access(p, mode))
    with pytest.raises(errors.WommError, match="add yourself to the docker group") as e:
        docker_engine.client(timeout=1)
    assert e.value.doctor


def lazy_here(here, monkeypatch):
    with records.update_project(here) as p:
        p["share"] = "lazy"
    from womm import confine

    monkeypatch.setattr(confine, "check", lambda: None)
    monkeypatch.setattr(confine, "landlock_abi", lambda: 6)


def probe_routes(pod_status, create=None):
    routes = healthy_routes()
    deleted = []
    routes[("POST", "/api/v1/namespaces/team/pods")] = create or (lambda q, body: routes.update(
        {("GET", f"/api/v1/namespaces/team/pods/{body['metadata']['name']}"): {
            "spec": {"nodeName": "node-1"}, "status": pod_status}}) or body)
    routes[("DELETE", "/api/v1/namespaces/team/pods")] = lambda q, body: deleted.append(q) or {}
    return routes, deleted


def test_lazy_share_probe_pod(here, monkeypatch):
    lazy_here(here, monkeypatch)
    ended = {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    routes, deleted = probe_routes(ended)
    cluster = use(monkeypatch, FakeCluster(routes))
    found = by_name(doctor.Doctor(None, None, str(here)).run())
    assert found[doctor.FUSE].ok, found[doctor.FUSE]
    assert "opened /dev/fuse on node-1" in found[doctor.FUSE].detail
    assert found["lazy share, here"].ok and "sshfs runs in the pods" in found["lazy share, here"].detail
    assert found["share server"].ok is None and found["rsync"].ok is None
    body = next(c[3] for c in cluster.calls if c[0] == "POST" and c[1].endswith("/pods") and not c[2])  # not a dry run
    container = body["spec"]["containers"][0]
    assert container["securityContext"] == {"privileged": True} and container["image"] == "reg/womm:1"
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "womm"
    assert deleted and deleted[0]["fieldSelector"] == f"metadata.name={body['metadata']['name']}"


def test_lazy_share_probe_without_fuse(here, monkeypatch):
    lazy_here(here, monkeypatch)
    routes, deleted = probe_routes({"containerStatuses": [{"state": {"terminated": {"exitCode": 4}}}]})
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.FUSE]
    assert check.ok is False and "/dev/fuse" in check.detail and deleted


def test_lazy_share_refused_privileged_pods(here, monkeypatch):
    lazy_here(here, monkeypatch)
    refusal = kube.ApiError(403, "Forbidden", json.dumps({"message": 'pods "x" is forbidden: violates PodSecurity '
                                                          '"baseline:latest": privileged'}).encode())
    routes, deleted = probe_routes({}, create=lambda q, body: refusal)
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.FUSE]
    assert check.ok is False and "refuses privileged pods" in check.detail and "PodSecurity" in check.detail
    assert "--share eager" in check.fix and not deleted


def test_not_set_up_here(tmp_path, monkeypatch):
    use(monkeypatch, FakeCluster(healthy_routes()))
    check = doctor.Doctor(None, None, str(tmp_path)).check_project()
    assert check.line() == f"FAIL this directory: {tmp_path} is not set up for womm; run `womm setup` here"


# ---------------------------------------------------------------- the registry's HTTP API


@pytest.mark.parametrize("image, expect", [
    ("ubuntu:22.04", ("registry-1.docker.io", "library/ubuntu", "22.04")),
    ("team/tool", ("registry-1.docker.io", "team/tool", "latest")),
    ("127.0.0.1:5000/womm-e2e/womm-image-x:2024", ("127.0.0.1:5000", "womm-e2e/womm-image-x", "2024")),
    ("localhost/a/b", ("localhost", "a/b", "latest")),
    ("reg.example.com:443/a@sha256:abc", ("reg.example.com:443", "a", "sha256:abc")),
])
def test_image_references(image, expect):
    assert registry.parse(image) == expect


@pytest.fixture
def fake_registry():
    """A plain-http registry on 127.0.0.1: manifests of present/* exist, locked/* want credentials."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append((self.path, self.headers.get("Accept")))
            if self.path.startswith("/v2/present/"):
                self.send_response(200)
                body = b"{}"
            elif self.path.startswith("/v2/locked/"):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="registry"')
                body = b""
            else:
                self.send_response(404)
                body = b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_registry_answers(fake_registry):
    host, seen = fake_registry
    assert registry.manifest(f"{host}/present/img:1") == (registry.PRESENT, f"{host}/present/img:1")
    assert seen[0][0] == "/v2/present/img/manifests/1" and "application/vnd.oci.image.index.v1+json" in seen[0][1]
    assert registry.manifest(f"{host}/gone/img:1") == (registry.ABSENT, "manifest unknown")
    state, said = registry.manifest(f"{host}/locked/img:1")
    assert state == registry.UNKNOWN and "cannot tell without credentials" in said


def test_registry_unreachable_is_unknown():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    state, said = registry.manifest(f"127.0.0.1:{port}/a:1", timeout=2)
    assert state == registry.UNKNOWN and "Connection refused" in said


def test_unknown_image_is_a_skip_not_a_failure(here, monkeypatch):
    monkeypatch.setattr(registry, "manifest", lambda image, timeout=5: (registry.UNKNOWN, "reg answers 401: "
                                                                        "cannot tell without credentials"))
    check = doctor.Doctor(None, None, str(here))
    check.check_project()
    assert check.check_image().line().startswith("skip the directory's image in its registry: reg/img:1: reg answers 401")


# ---------------------------------------------------------------- the hint in other programs' errors


def test_misconfigurations_end_with_the_doctor_hint(capsys):
    def raising(e):
        def main(argv):
            raise e
        return main

    for e, hinted in [(kube.ApiError(403, "Forbidden", b'{"message": "pods/exec is forbidden"}'), True),
                      (kube.Unreachable("cannot reach the Kubernetes API at https://x: timed out"), True),
                      (kube.ApiError(404, "Not Found"), False), (errors.WommError("no such task"), False),
                      (errors.WommError("no share server in namespace n: run `womm cluster-setup`", doctor=True), True)]:
        with pytest.raises(SystemExit):
            errors.run_main(raising(e), [], prog="womm-x")
        line = capsys.readouterr().err
        assert line.count("\n") == 1
        assert line.rstrip().endswith("; run `womm doctor`") == hinted, line


def test_a_fatal_message_keeps_its_hint_at_the_end():
    message = errors.with_hint("pod p cannot start: ErrImagePull: not found")
    text, hinted = errors.split_hint(message)
    assert hinted and text == "pod p cannot start: ErrImagePull: not found"
    assert errors.with_hint(errors.with_hint(text)) == message


# ---------------------------------------------------------------- admission: Pod Security, quotas, limits


def forbidden(message):
    return kube.ApiError(403, "Forbidden", json.dumps({"message": message}).encode())


def test_pod_security_that_refuses_root_jobs_is_met_by_running_them_as_a_user(here, monkeypatch):
    routes = healthy_routes()

    def dry_run(query, body):
        assert query == {"dryRun": "All"}
        if (body["spec"].get("securityContext") or {}).get("runAsNonRoot"):
            return body
        return forbidden('pods "womm-admission-check-x" is forbidden: violates PodSecurity "restricted:latest": '
                         'runAsNonRoot != true')

    routes[("POST", "/api/v1/namespaces/team/pods")] = dry_run
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.ADMISSION]
    assert check.ok and "run as user" in check.detail


def test_pod_security_that_refuses_any_pod_of_womms_is_named(here, monkeypatch):
    routes = healthy_routes()
    routes[("POST", "/api/v1/namespaces/team/pods")] = forbidden(
        'pods "x" is forbidden: violates PodSecurity "restricted:latest": seccompProfile')
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.ADMISSION]
    assert check.ok is False and "(Pod Security): violates PodSecurity" in check.detail


def test_a_full_quota_is_named(here, monkeypatch):
    routes = healthy_routes()
    routes[("GET", "/api/v1/namespaces/team/resourcequotas")] = {"items": [{
        "metadata": {"name": "team-quota"}, "spec": {},
        "status": {"hard": {"requests.cpu": "2", "pods": "10"}, "used": {"requests.cpu": "2000m", "pods": "3"}}}]}
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.ADMISSION]
    assert check.ok is False and "quota team-quota: requests.cpu 2000m of 2 used" in check.detail


def test_a_limit_range_below_the_job_size_is_named(here, monkeypatch):
    routes = healthy_routes()
    routes[("GET", "/api/v1/namespaces/team/limitranges")] = {"items": [{
        "metadata": {"name": "small"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "128Mi"}}]}}]}
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.ADMISSION]
    assert check.ok is False and "LimitRange small's maximum per container, 128Mi" in check.detail
    assert "job container's memory" in check.detail


def test_an_edit_user_is_told_that_only_an_admin_prepares_the_namespace(here, monkeypatch):
    routes = healthy_routes(allowed=lambda rule: rule[2] not in ("roles", "rolebindings"))
    del routes[("GET", "/api/v1/namespaces/team/configmaps/womm-config")]
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())["helper image"]
    assert check.ok is False and "only an admin of namespace team" in check.fix
    assert "womm cluster-setup --apply --namespace team" in check.fix


# ---------------------------------------------------------------- the network between workers and the share server

REFUSED = {"exitCode": 10, "reason": "Error",
           "message": "rsync: [Receiver] failed to connect to 10.0.0.9 (10.0.0.9): Connection refused (111)\n"}
DENY_EGRESS = {"metadata": {"name": "deny-egress"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}


def network_routes(ended, policies=()):
    routes, deleted = probe_routes({"containerStatuses": [{"state": {"terminated": ended}}]})
    routes[("GET", "/apis/networking.k8s.io/v1/namespaces/team/networkpolicies")] = {"items": list(policies)}
    create = routes[("POST", "/api/v1/namespaces/team/pods")]
    routes[("POST", "/api/v1/namespaces/team/pods")] = lambda q, body: body if q else create(q, body)
    return routes, deleted


def test_network_probe_is_labelled_as_the_shares_workers(here, monkeypatch):
    routes, deleted = network_routes({"exitCode": 0, "reason": "Completed"})
    cluster = use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.NETWORK]
    assert check.ok and check.detail == ("a pod labelled as this share's workers connected to the share server "
                                         "(10.0.0.9:873)")
    body = next(c[3] for c in cluster.calls if c[0] == "POST" and c[1].endswith("/pods") and not c[2])
    labels = body["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "womm" and labels["womm.dev/share"] == "abc"
    assert labels["womm.dev/role"] == "worker" and "womm.dev/task" not in labels  # no task's: womm status ignores it
    assert "rsync://10.0.0.9:873/" in body["spec"]["containers"][0]["command"][-1]
    assert body["spec"]["securityContext"]["runAsNonRoot"] and body["spec"]["activeDeadlineSeconds"]
    assert deleted and deleted[0]["fieldSelector"] == f"metadata.name={body['metadata']['name']}"


def test_network_refused_names_the_policy_that_denies_it(here, monkeypatch):
    routes, deleted = network_routes(REFUSED, [DENY_EGRESS])
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.NETWORK]
    assert check.ok is False and deleted
    assert check.detail == ("a pod labelled as this share's workers cannot connect to the share server (10.0.0.9:873: "
                            "failed to connect to 10.0.0.9 (10.0.0.9): Connection refused (111)): NetworkPolicy "
                            "deny-egress of namespace team selects the worker pods and allows them no egress to the "
                            "share server")
    assert "TCP port 8873" in check.fix


def test_network_refused_without_a_policy_to_blame(here, monkeypatch):
    routes, _ = network_routes(REFUSED)
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.NETWORK]
    assert check.ok is False and check.detail.endswith("no NetworkPolicy of the namespace explains it")


def test_a_policy_the_network_does_not_enforce_is_said_beside_ok(here, monkeypatch):
    routes, _ = network_routes({"exitCode": 0}, [DENY_EGRESS])
    use(monkeypatch, FakeCluster(routes))
    check = by_name(doctor.Doctor(None, None, str(here)).run())[doctor.NETWORK]
    assert check.ok and "does not enforce NetworkPolicies" in check.detail and "deny-egress" in check.detail


def test_network_check_is_for_eager_shares_only(here, monkeypatch):
    lazy_here(here, monkeypatch)
    use(monkeypatch, FakeCluster(healthy_routes()))
    assert by_name(doctor.Doctor(None, None, str(here)).run())[doctor.NETWORK].ok is None


def policy(name, spec):
    return {"metadata": {"name": name}, "spec": spec}


WORKER = {"app.kubernetes.io/managed-by": "womm", "womm.dev/role": "worker", "womm.dev/share": "abc"}
SERVER = {"app.kubernetes.io/managed-by": "womm", "womm.dev/role": "share-server"}
NS = {"kubernetes.io/metadata.name": "team"}


def denied(*policies, server_ip="10.244.0.7"):
    return doctor.denying(list(policies), WORKER, SERVER, NS, server_ip, 8873, "rsync")


def test_denying_follows_networkpolicy_semantics():
    from womm import manifests

    womms_own = manifests.share_server("reg/womm:1")[2]  # admits womm's pods of some share to port 8873
    assert denied(womms_own) == ([], [])
    assert denied() == ([], [])
    assert denied(DENY_EGRESS) == (["deny-egress"], [])
    to_server = {"to": [{"podSelector": {"matchLabels": {"womm.dev/role": "share-server"}}}],
                 "ports": [{"port": 8873}]}
    assert denied(DENY_EGRESS, policy("to-server", {"podSelector": {}, "policyTypes": ["Egress"],
                                                    "egress": [to_server]})) == ([], [])
    by_name_of_port = {**to_server, "ports": [{"protocol": "TCP", "port": "rsync"}]}
    named = policy("named", {"podSelector": {}, "egress": [by_name_of_port]})
    assert denied(DENY_EGRESS, named) == ([], ["named"])  # no policyTypes, so Ingress too: it denies the server's
    named["spec"]["policyTypes"] = ["Egress"]
    assert denied(DENY_EGRESS, named) == ([], [])
    dns_only = policy("dns", {"podSelector": {}, "policyTypes": ["Egress"],
                              "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]})
    assert denied(dns_only) == (["dns"], [])
    other_ns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "elsewhere"}},
                        "podSelector": {}}]}
    assert denied(policy("other", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [other_ns]})) == (
        ["other"], [])
    block = {"to": [{"ipBlock": {"cidr": "10.244.0.0/24", "except": ["10.244.0.128/25"]}}]}
    by_block = policy("block", {"podSelector": {"matchLabels": {"womm.dev/role": "worker"}}, "egress": [block]})
    assert denied(by_block) == ([], [])
    assert denied(by_block, server_ip="10.244.0.200") == (["block"], [])
    not_womm = policy("not-womm", {"podSelector": {"matchExpressions": [
        {"key": "app.kubernetes.io/managed-by", "operator": "NotIn", "values": ["womm"]}]}, "policyTypes": ["Egress"]})
    assert denied(not_womm) == ([], [])
    deny_ingress = policy("deny-in", {"podSelector": {}, "policyTypes": ["Ingress"]})
    assert denied(deny_ingress) == ([], ["deny-in"])
    assert denied(deny_ingress, womms_own) == ([], [])  # one policy that admits is enough
