"""The files that the docs, the README, the scripts and the tests name exist: sources, test files,
docs (issue 28: paths still pointed to where files were before a move, and the README to a test
file split by feature). Reads text only: no root, no jail."""
import re

from conftest import REPO

# `Sources/JailDaemon/Init/Init.swift`, `Tests/JailDaemonTests/X.swift`, `Channels/JailState.swift`,
# `Init+Boot.swift`: a path or a name of a Swift or C source of this repository.
NAMED = re.compile(r"(?<![\w/.+-])((?:[A-Za-z][\w+-]*/)*[A-Za-z][\w+-]*\.(?:swift|c))\b")
# `test_ports.py` (an integration test file), `docs/config.md`.
TEST_FILE = re.compile(r"(?<![\w/])(test_\w+\.py)\b")
DOC = re.compile(r"(?<![\w/])(docs/[\w-]+\.md)\b")
WHERE = ["README.md", "docs", "scripts", "integration"]
# C files the tests write from text of their own and compile (and one of the kernel's).
NOT_OURS = {"probe.c", "escprobe.c", "netprobe.c", "svcclient.c", "sendlog.c", "addrprobe.c", "jailprobe.c",
            "userns-limit.c", "progs/bind_perm.c"}


def texts():
    for place in WHERE:
        path = REPO / place
        for file in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            if file.suffix in (".md", ".py", ""):
                try:
                    yield file, file.read_text()
                except UnicodeDecodeError:
                    continue


def sources():
    return ["/".join(p.relative_to(REPO).parts) for top in ("Sources", "Tests", "integration")
            for p in (REPO / top).rglob("*") if p.suffix in (".swift", ".c")] + ["Package.swift"]


def missing(name, known):
    """Whether no file of the repository is `name`: a full path (Sources/…, Tests/…) exactly,
    a shorter one (`Channels/JailState.swift`) or a bare name as the end of one."""
    if name.startswith(("Sources/", "Tests/", "integration/")):
        return name not in known
    return not any(path == name or path.endswith("/" + name) for path in known)


def test_every_file_named_exists():
    known = sources()
    assert "Sources/JailDaemon/Channels/JailState.swift" in known, "the walk found the sources"
    stale = []
    for file, text in texts():
        if file == REPO / "integration" / "test_paths.py":
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for name in NAMED.findall(line):
                if name in NOT_OURS or name.split("/")[-1] in NOT_OURS or any(name.endswith(n) for n in NOT_OURS):
                    continue
                if missing(name, known):
                    stale.append(f"{file.relative_to(REPO)}:{number}: {name}")
            for name in TEST_FILE.findall(line):
                if not (REPO / "integration" / name).is_file():
                    stale.append(f"{file.relative_to(REPO)}:{number}: {name}")
            for name in DOC.findall(line):
                if not (REPO / name).is_file():
                    stale.append(f"{file.relative_to(REPO)}:{number}: {name}")
    assert not stale, "named but not in the repository:\n" + "\n".join(stale)


def test_the_check_finds_what_moved():
    known = sources()
    assert missing("Sources/JailDaemon/Control/CreateJail.swift", known)  # now Provision/
    assert missing("JailSystem/Readiness.swift", known)  # now JailDaemon/Channels/SupervisorChannel.swift
    assert not missing("Provision/CreateJail.swift", known) and not missing("SupervisorChannel.swift", known)
    assert NAMED.findall("see `Sources/JailDaemon/Init/Init+Boot.swift` and Channels/JailState.swift.") == [
        "Sources/JailDaemon/Init/Init+Boot.swift", "Channels/JailState.swift"]
