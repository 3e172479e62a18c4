"""Config files (docs/config.md): `jaild --config FILE` and `jaild start NAME` read them, flags on
the command line win; `jaild config NAME|FILE` prints the entries as jaild reads them, the one
reader that the Ansible module reads through too (test_fleet.py checks the module's side)."""
import json
import subprocess

from conftest import JAILD

# Comments only at a line's start (`#` or `;`, indented or not), a `#` and a `;` inside values,
# quotes kept, `=` inside a value, no spaces around `=`, repeated keys, blank lines, CRLF lines.
TRICKY = ("# the test jail\n"
          "; also a comment\n"
          "   # an indented comment\n"
          "\n"
          "uid = 61000\n"
          "boot = echo a#b\n"
          "boot = echo \"quoted = yes\" ; not a comment\r\n"
          "hostname=tricky\r\n"
          "\t\n"
          "memory = 64M   \n"
          "service = /run/a.sock=/srv/a.sock\n"
          "service = /run/b.sock=/srv/b.sock,header=none\n"
          "mount = /data=/srv/data:ro")
TRICKY_ENTRIES = [
    {"line": 5, "key": "uid", "value": "61000"},
    {"line": 6, "key": "boot", "value": "echo a#b"},
    {"line": 7, "key": "boot", "value": "echo \"quoted = yes\" ; not a comment"},
    {"line": 8, "key": "hostname", "value": "tricky"},
    {"line": 10, "key": "memory", "value": "64M"},
    {"line": 11, "key": "service", "value": "/run/a.sock=/srv/a.sock"},
    {"line": 12, "key": "service", "value": "/run/b.sock=/srv/b.sock,header=none"},
    {"line": 13, "key": "mount", "value": "/data=/srv/data:ro"},
]


def jaild(*args, **kwargs):
    return subprocess.run([JAILD, *args], capture_output=True, text=True, timeout=60, **kwargs)


def test_jaild_config_prints_the_entries_as_jaild_reads_them(tmp_path):
    path = tmp_path / "tricky.conf"
    path.write_bytes(TRICKY.encode())
    as_json = jaild("config", str(path), "--json")
    assert as_json.returncode == 0 and as_json.stderr == "", as_json
    assert json.loads(as_json.stdout) == TRICKY_ENTRIES
    text = jaild("config", str(path))
    assert text.stdout == "".join(f"{e['key']} = {e['value']}\n" for e in TRICKY_ENTRIES), text
    # Standard input, and a NAME in the config directory, read the same.
    assert jaild("config", "-", "--json", input=TRICKY).stdout == as_json.stdout
    (tmp_path / "named.conf").write_bytes(TRICKY.encode())
    named = jaild("config", "named", "--json", env={"JAIL_CONFIG_DIR": str(tmp_path)})
    assert named.stdout == as_json.stdout, named
    # What is printed is a config again, read the same.
    assert [(e["key"], e["value"]) for e in json.loads(jaild("config", "-", "--json", input=text.stdout).stdout)] \
        == [(e["key"], e["value"]) for e in TRICKY_ENTRIES]
    # Every value checked as a start checks it.
    checked = jaild("config", str(path), "--check", "--json")
    assert checked.returncode == 0 and checked.stdout == as_json.stdout, checked


def test_jaild_config_refuses_what_a_start_refuses_with_the_line(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("uid = 61000\n# fine so far\nbogus = 1\n")
    result = jaild("config", str(path))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.split(" (known")[0] == f"jaild: {path}:3: unknown key 'bogus'", result.stderr
    path.write_text("uid = 61000\nroot\n")
    result = jaild("config", str(path), "--json")
    assert (result.returncode, result.stderr) == (1, f"jaild: {path}:2: expected 'key = value', got 'root'\n")
    # A value only a start's parser refuses: printed as it is, refused with --check.
    path.write_text("uid = 61000\npids = many\n")
    assert jaild("config", str(path)).stdout == "uid = 61000\npids = many\n"
    result = jaild("config", str(path), "--check")
    assert result.returncode == 1 and result.stderr.startswith(f"jaild: {path}:2: ") and result.stderr.count("\n") == 1, \
        result.stderr
    missing = jaild("config", str(tmp_path / "missing.conf"))
    assert (missing.returncode, missing.stderr) == (1, f"jaild: cannot read config {tmp_path}/missing.conf: "
                                                       "No such file or directory\n")
    assert jaild("config", ".hidden").returncode == 2
