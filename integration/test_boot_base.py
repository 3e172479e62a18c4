"""A booted distribution on a shared base (issue 30, item 1: "works with and without a base"):
`jaild create NAME --base DEBIAN-WITH-SYSTEMD --init /sbin/init` writes `init` into NAME.conf;
`jaild start NAME` boots systemd on the overlay root, a tenant's `su -`-style session lands in
systemd's tree, what systemd writes stays in the jail's upper layer, the base is untouched,
and `jaild stop NAME` ends it with nothing left."""
import hashlib
import os

from conftest import cached_debian_rootfs

NAME, UID = "jt-bootbase", 63110


def tree_digest(root):
    """Names, modes and sizes of every entry of the base: enough to see a write through the overlay."""
    digest = hashlib.sha256()
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        for entry in sorted(subdirectories + files):
            path = os.path.join(directory, entry)
            info = os.lstat(path)
            digest.update(f"{path}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def test_a_created_jail_boots_systemd_on_its_base(prov):
    systemd_base = cached_debian_rootfs("systemd")
    before = tree_digest(systemd_base)
    prov.create(NAME, UID, systemd_base, "--init", "/sbin/init", "--memory", "256M", start=False)
    assert "init = /sbin/init" in (prov.conf / f"{NAME}.conf").read_text()
    prov.jaild("start", NAME, check=True)
    try:
        # Ready when start returns: systemd answers at once.
        state = prov.jaild("enter", NAME, "--root", "--", "systemctl", "is-system-running")
        assert state.stdout.strip() in ("running", "degraded"), (state.stdout, state.stderr)
        if state.stdout.strip() == "degraded":
            failed = prov.jaild("enter", NAME, "--root", "--", "systemctl", "--failed", "--no-legend").stdout
            # Debian's ssh.service wants port 22, which no --ports gives this jail; nothing else may fail.
            assert all(line.split()[0] in ("ssh.service", "●") for line in failed.splitlines() if line.strip()), failed
        # The tenant's session is in systemd's tree: PID 1 there is systemd.
        pid1 = prov.session(UID, "ps -o comm= -p 1")
        assert pid1.stdout == b"systemd\n", pid1.stderr
        # The machine id systemd made at first boot is the jail's own, in its upper layer.
        machine_id = (prov.upper(NAME) / "etc" / "machine-id").read_text().strip()
        assert len(machine_id) == 32
    finally:
        prov.jaild("stop", NAME, check=True)
    assert prov.jaild("status", NAME).returncode == 3
    assert tree_digest(systemd_base) == before, "the shared base was written through the overlay"
