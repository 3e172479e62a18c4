"""`jaild metrics` (issue 35, items 1 and 3): every running jail's figures in the Prometheus
text format, checked by promtool, moved by what the jails do (an OOM kill, a second of CPU),
and served by the real node_exporter through its textfile collector."""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.request

import pytest

from conftest import JAILD, REPO, UID_A, UID_B, Jail, as_user, build_rootfs, wait_for
from harness import free_port

UID_C = 61002
SERIES = re.compile(r'^([a-z_]+)\{jail="((?:[^"\\]|\\.)*)",uid="(\d+)"\} (\S+)$')


@pytest.fixture(scope="module")
def rootfs_c(tmp_path_factory):
    return build_rootfs(tmp_path_factory.mktemp("rootfs") / "c", UID_C, "Jail test rootfs C")


@pytest.fixture(scope="module")
def three_jails(rootfs_a, rootfs_b, rootfs_c):
    """An idle jail, a limited one (--memory 64M --pids 64) and a third, by uid."""
    jails = {}
    try:
        for uid, root, args in ((UID_A, rootfs_a, []), (UID_B, rootfs_b, ["--memory", "64M", "--pids", "64"]),
                                (UID_C, rootfs_c, [])):
            jails[uid] = Jail(root, uid, args).start()
        yield jails
    finally:
        for jail in jails.values():
            jail.stop()


def exposition():
    result = subprocess.run([JAILD, "metrics"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def metrics():
    """{(metric, uid): value} of `jaild metrics`."""
    out = {}
    for line in exposition().splitlines():
        if line.startswith("#"):
            continue
        match = SERIES.match(line)
        assert match, line
        out[(match[1], int(match[3]))] = float(match[4])
    return out


def test_every_jail_is_exposed_and_promtool_accepts_it(three_jails):
    text = exposition()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    figures = metrics()
    for uid in three_jails:
        assert figures[("jail_up", uid)] == 1
        assert f'jail_up{{jail="{uid}-{uid}",uid="{uid}"}} 1' in text
        assert figures[("jail_cpu_seconds_total", uid)] >= 0
        assert figures[("jail_sessions", uid)] == 0
        assert abs(figures[("jail_start_time_seconds", uid)] - os.stat(three_jails[uid].pidfile).st_mtime) < 5
    assert figures[("jail_memory_limit_bytes", UID_B)] == 64 << 20
    assert figures[("jail_pids_limit", UID_B)] == 64
    assert figures[("jail_pids", UID_B)] >= 1
    assert figures[("jail_memory_bytes", UID_B)] > 0
    assert figures[("jail_oom_kills_total", UID_B)] >= 0
    # A jail without the controller has no series (not a 0 that looks like a figure).
    assert ("jail_memory_limit_bytes", UID_A) not in figures
    assert ("jail_pids_limit", UID_A) not in figures
    for family in ("jail_up", "jail_cpu_seconds_total", "jail_memory_bytes", "jail_oom_kills_total"):
        assert f"# HELP {family} " in text and f"# TYPE {family} " in text


def test_an_allocation_past_memory_counts_one_oom_kill(three_jails):
    jail = three_jails[UID_B]
    before = metrics()[("jail_oom_kills_total", UID_B)]
    result = jail.run("head -c 400000000 /dev/zero | tail -c 300000000 > /dev/null; echo status=$?")
    assert b"status=137" in result.stdout, (result.stdout, result.stderr)
    figures = metrics()
    assert figures[("jail_oom_kills_total", UID_B)] == before + 1
    assert figures[("jail_memory_max_bytes", UID_B)] >= 60 << 20


def test_a_second_of_cpu_inside_counts_one_second(three_jails):
    jail = three_jails[UID_A]
    before = metrics()[("jail_cpu_seconds_total", UID_A)]
    # The shell spins until its own CPU time (utime + stime, in 1/100 s) reaches 1 s: the
    # figure does not depend on how busy the host is. The spin reads /proc without forking.
    result = jail.run('while :; do read -r l < /proc/$$/stat; set -- $l; [ $(( ${14} + ${15} )) -ge 100 ] && break; done; '
                      'echo ticks=$(( ${14} + ${15} ))', timeout=120)
    assert result.stdout.startswith(b"ticks=1"), (result.stdout, result.stderr)
    used = metrics()[("jail_cpu_seconds_total", UID_A)] - before
    assert 0.8 <= used <= 1.2, used
    # The other jails' figures did not take it.
    assert metrics()[("jail_cpu_seconds_total", UID_C)] < 0.5


def test_node_exporter_serves_the_jails_from_its_textfile_directory(three_jails):
    directory = pathlib.Path(tempfile.mkdtemp(prefix="jail-metrics-"))
    exporter = None
    try:
        result = subprocess.run([JAILD, "metrics", "--output", str(directory / "jail.prom")], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        # Written through a temporary file renamed over jail.prom: nothing else is left.
        assert os.listdir(directory) == ["jail.prom"]
        assert (directory / "jail.prom").stat().st_mode & 0o777 == 0o644
        port = free_port()
        exporter = subprocess.Popen(["prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
                                     f"--collector.textfile.directory={directory}",
                                     f"--web.listen-address=127.0.0.1:{port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def scrape():
            assert exporter.poll() is None, exporter.stderr.read().decode(errors="replace")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    return response.read().decode()
            except OSError:
                return None

        page = wait_for(scrape, 20, "node_exporter's /metrics")
        for uid in three_jails:
            assert f'jail_up{{jail="{uid}-{uid}",uid="{uid}"}} 1' in page, page
        assert 'jail_pids_limit{jail="%d-%d",uid="%d"} 64' % (UID_B, UID_B, UID_B) in page
        assert "node_textfile_scrape_error 0" in page
    finally:
        if exporter is not None:
            exporter.send_signal(signal.SIGTERM)
            try:
                exporter.wait(timeout=10)
            except subprocess.TimeoutExpired:
                exporter.kill()
                exporter.wait()
        shutil.rmtree(directory, ignore_errors=True)


def test_output_failures_are_one_line_and_leave_nothing(tmp_path):
    missing = tmp_path / "no-such-directory" / "jail.prom"
    result = subprocess.run([JAILD, "metrics", "--output", str(missing)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert str(missing) in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert subprocess.run([JAILD, "metrics", "--bogus"], capture_output=True, timeout=30).returncode == 2
    # Only root reads the session records.
    user = subprocess.run([JAILD, "metrics"], capture_output=True, text=True, timeout=30, preexec_fn=as_user(UID_A))
    assert user.returncode == 1 and "root" in user.stderr


def test_systemd_units_verify(tmp_path):
    service = (REPO / "contrib" / "systemd" / "jail-metrics.service").read_text()
    timer = (REPO / "contrib" / "systemd" / "jail-metrics.timer").read_text()
    assert "Type=oneshot" in service
    assert "ExecStart=/usr/local/sbin/jaild metrics --output /var/lib/prometheus/node-exporter/jail.prom" in service
    assert "OnUnitActiveSec=15s" in timer
    if not shutil.which("systemd-analyze"):
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (scripts/test installs systemd)")
        pytest.skip("no systemd-analyze")
    fake = tmp_path / "jaild"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    (tmp_path / "jail-metrics.service").write_text(service.replace("/usr/local/sbin/jaild", str(fake)))
    (tmp_path / "jail-metrics.timer").write_text(timer)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "jail-metrics.service"),
                             str(tmp_path / "jail-metrics.timer")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
