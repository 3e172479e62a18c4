#!/usr/bin/python
# -*- coding: utf-8 -*-
# A tenant of a jail host: `jaild create/start/stop/destroy`, idempotent.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: jail_tenant
short_description: A tenant of a Jail host, made with jaild create and kept as declared
description:
  - Creates, starts, stops and destroys one jail with C(jaild create), C(jaild start),
    C(jaild stop) and C(jaild destroy). A tenant is a copy-on-write root over a shared base,
    its jail user, a host account of the same name whose login shell is C(jail), and
    C(/etc/jail/NAME.conf).
  - Idempotent. A second run with the same arguments changes nothing and says so.
  - The options that can change in place (I(ports), I(address), I(loopback), I(memory), I(pids), I(cpus), I(rc), I(init)) are
    rewritten in the tenant's config file (read by C(jaild config), jaild's own reader; every
    other line is kept); a running tenant is then restarted so they apply.
    I(uid), I(gid), I(base) and I(user) cannot change once the tenant exists; the module fails
    and says to destroy the tenant first.
  - jaild's one-line errors are the module's failure messages.
version_added: "1.0.0"
author:
  - Jail developers
options:
  name:
    description: The tenant's name; also its host account's name and its config file's.
    type: str
    required: true
  uid:
    description: The tenant's uid, on the host and inside the jail. Required to create it.
    type: int
  gid:
    description: The tenant's gid (default the uid).
    type: int
  base:
    description: A base name under C(/var/lib/jail/bases), or a path to a root file system.
      Required to create the tenant.
    type: str
  user:
    description: The jail user's name inside the jail.
    type: str
    default: work
  keys:
    description: ssh public keys (lines of authorized_keys) for the host account and the
      jail user.
    type: list
    elements: str
    default: []
  ports:
    description: The ports the tenant owns, e.g. C(tcp:25) or C(tcp:22,tcp:8000-8099).
    type: str
  address:
    description: The tenant's own host address (jaild C(--address)), e.g. C(192.0.2.10); it must
      be configured on the host. Binds to the wildcard become it, its traffic leaves from it,
      and I(ports) are owned on it only, so tenants on different addresses may own the same
      ports.
    type: str
  loopback:
    description: The tenant's own 127/8 address (jaild C(--loopback)), what its 127.0.0.1
      becomes, or C(auto) (the default with I(address)).
    type: str
  memory:
    description: Memory limit of the tenant's programs, e.g. C(512M).
    type: str
  pids:
    description: Most processes the tenant's programs may have.
    type: int
  cpus:
    description: CPU time of the tenant's programs, in CPUs.
    type: float
  rc:
    description: Command run as root inside the jail at each start (its services).
    type: str
  init:
    description:
      - The distribution's init to boot in the jail (jaild's C(--init)), e.g. C(/sbin/init) for
        systemd: PID 1 of a nested PID namespace under jaild's init (README, "A jail that boots
        its distribution"). Needs a rootfs with systemd (scripts/make-debian-rootfs --systemd).
    type: str
  services:
    description:
      - Host unix sockets served inside the jail (jaild's C(--service), see docs/services.md),
        each C(JPATH=HOSTPATH[,mode=0666][,owner=UID[:GID]][,header=proxy|none][,max=N]).
      - Passed through as the config's C(service) lines; when given, the tenant's lines become
        exactly these (a running tenant is restarted). Unset leaves them as they are.
    type: list
    elements: str
  state:
    description:
      - C(present) the tenant exists; C(started) it exists and runs; C(stopped) it exists and
        does not run; C(absent) nothing of it is left (its data neither).
    type: str
    choices: [present, absent, started, stopped]
    default: started
  jaild:
    description: The jaild program.
    type: path
    default: /usr/local/sbin/jaild
  config_dir:
    description: Where tenant config files are (jaild's C(JAIL_CONFIG_DIR)).
    type: path
    default: /etc/jail
  state_dir:
    description: Where tenant data and bases are (jaild's C(JAIL_STATE_DIR)).
    type: path
    default: /var/lib/jail
  sshd_config_dir:
    description: sshd's drop-in directory, where C(jaild create) puts C(jail.conf) when absent
      (jaild's C(JAIL_SSHD_CONFIG_DIR)).
    type: path
    default: /etc/ssh/sshd_config.d
notes:
  - Supports check mode and diff mode.
"""

EXAMPLES = r"""
- name: A mail tenant that owns port 25 and starts its MTA as root inside
  jail.hosting.jail_tenant:
    name: mail
    uid: 62100
    base: bookworm
    ports: tcp:25
    address: 192.0.2.10
    memory: 256M
    rc: /usr/sbin/exim4 -bd -q30m
    services:
      - /run/smarthost.sock=/run/jail-services/smtp/smtp.sock
    keys:
      - "ssh-ed25519 AAAAC3Nza... operator@example"

- name: The tenant is gone, with its data
  jail.hosting.jail_tenant:
    name: mail
    state: absent
"""

RETURN = r"""
config:
  description: The tenant's config entries after the run (key to value).
  returned: when the tenant exists after the run
  type: dict
running:
  description: Whether the tenant runs after the run.
  returned: always
  type: bool
commands:
  description: The jaild commands the module ran (or would run, in check mode).
  returned: always
  type: list
  elements: str
"""

import json
import os
import pwd
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule

# The options that can change in place: module parameter -> config key.
MUTABLE = {"ports": "ports", "address": "address", "loopback": "loopback", "memory": "memory", "pids": "pids",
           "cpus": "cpus", "rc": "rc", "init": "init"}


def read_config(module, jaild, env, text):
    """jaild's own reading of config text (`jaild config - --json`, docs/config.md): the
    entries in order, each {"line", "key", "value"}. One reader of the format for jaild and this
    module; text jaild cannot read fails the task with jaild's line."""
    rc, out, err = module.run_command([jaild, "config", "-", "--json"], data=text, binary_data=True,
                                      environ_update=env)
    if rc != 0:
        message = (err or out).strip().splitlines()
        module.fail_json(msg=message[-1] if message else f"{jaild} config exited {rc}", rc=rc, stderr=err)
    return json.loads(out)


def config_values(entries):
    """Key to value; the last of a repeated key wins, as it does for jaild's single options."""
    return {entry["key"]: entry["value"] for entry in entries}


def config_services(entries):
    """The `service` values, in order (a repeatable key)."""
    return [entry["value"] for entry in entries if entry["key"] == "service"]


def rewrite_config(text, entries, desired, services=None):
    """The config text with each key of `desired` set (value: its first line rewritten, its
    repeats dropped, appended when absent) or removed (None), and, unless `services` is None,
    exactly these `service` lines at the end. `entries` are jaild's reading of `text`, whose
    line numbers say which line holds which key; every other line (comments, blank lines, other
    keys) is kept byte for byte, in the format docs/config.md documents: `key = value` lines."""
    lines = text.split("\n")  # jaild ends lines at LF (a CRLF line keeps its CR here, and below)
    if lines and lines[-1] == "":
        lines.pop()
    out = list(lines)
    done = set()
    for entry in entries:
        key, index = entry["key"], entry["line"] - 1
        if key in desired:
            if key in done or desired[key] is None:
                out[index] = None
            else:
                out[index] = f"{key} = {desired[key]}" + ("\r" if lines[index].endswith("\r") else "")
            done.add(key)
        elif key == "service" and services is not None:
            out[index] = None
    out = [line for line in out if line is not None]
    out += [f"{key} = {value}" for key, value in desired.items() if key not in done and value is not None]
    out += [f"service = {value}" for value in services or []]
    return "\n".join(out) + "\n"


KEY_TYPES = ("ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-sha2-")


def key_body(line):
    """A key line's type and base64, whatever its options and comment (None: not a key)."""
    fields = line.split()
    for i, field in enumerate(fields[:-1]):
        if field.startswith(KEY_TYPES) and fields[i + 1].startswith("AAAA"):
            return (field, fields[i + 1])
    return None


def key_options(entries):
    """The options that lead a host key, as jaild create writes them (SshdAccess.keyOptions):
    restrict, a pty, and agent and X11 forwarding only when the jail serves them."""
    def on(key, default):
        return entries.get(key, "yes" if default else "no").lower() in ("yes", "true", "1", "on")
    return ",".join(["restrict", "pty"] + (["agent-forwarding"] if on("forward-agent", True) else [])
                    + (["X11-forwarding"] if on("forward-x11", False) else []))


def format_value(value):
    if isinstance(value, float):
        return ("%f" % value).rstrip("0").rstrip(".")
    return str(value)


class Tenant:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.name = self.p["name"]
        self.config_path = os.path.join(self.p["config_dir"], self.name + ".conf")
        self.env = {"JAIL_CONFIG_DIR": self.p["config_dir"], "JAIL_STATE_DIR": self.p["state_dir"],
                    "JAIL_SSHD_CONFIG_DIR": self.p["sshd_config_dir"]}
        self.commands = []
        self.changed = False

    def jaild(self, *args, check=True):
        argv = [self.p["jaild"], *args]
        self.commands.append(shlex.join(argv))
        if self.module.check_mode:
            return 0, "", ""
        rc, out, err = self.module.run_command(argv, environ_update=self.env)
        if check and rc != 0:
            message = (err or out).strip().splitlines()
            self.module.fail_json(msg=message[-1] if message else f"{argv[0]} {args[0]} exited {rc}",
                                  rc=rc, stdout=out, stderr=err, commands=self.commands)
        return rc, out, err

    def read(self, text):
        return read_config(self.module, self.p["jaild"], self.env, text)

    def config_text(self):
        try:
            # As jaild reads it: no newline translation (a CR stays a CR).
            with open(self.config_path, newline="") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def host_account(self):
        try:
            return pwd.getpwnam(self.name)
        except KeyError:
            return None

    def running(self):
        if self.config_text() is None:
            return False
        rc, _, _ = self.module.run_command([self.p["jaild"], "status", self.name], environ_update=self.env)
        return rc == 0

    def desired_mutable(self):
        return {key: (None if self.p[param] is None else format_value(self.p[param])) for param, key in MUTABLE.items()}

    def create(self):
        for required in ("uid", "base"):
            if self.p[required] is None:
                self.module.fail_json(msg=f"tenant {self.name} does not exist: {required} is required to create it")
        args = ["create", self.name, "--uid", str(self.p["uid"]), "--base", self.p["base"], "--user", self.p["user"]]
        if self.p["gid"] is not None:
            args += ["--gid", str(self.p["gid"])]
        for key, value in self.desired_mutable().items():
            if value is not None:
                args += [f"--{key}", value]
        for service in self.p["services"] or []:
            args += ["--service", service]
        key_file = None
        try:
            if self.p["keys"]:
                handle, key_file = tempfile.mkstemp(prefix="jail-tenant-keys-")
                with os.fdopen(handle, "w") as f:
                    f.write("\n".join(self.p["keys"]) + "\n")
                args += ["--key", key_file]
            self.jaild(*args)
        finally:
            if key_file:
                os.unlink(key_file)
        self.changed = True

    def check_fixed(self, entries):
        """uid, gid, base and user are the tenant's identity: they do not change in place."""
        fixed = {"uid": self.p["uid"], "gid": self.p["gid"], "name": self.p["user"]}
        for key, value in fixed.items():
            if value is not None and key in entries and entries[key] != str(value):
                self.module.fail_json(msg=f"tenant {self.name} exists with {key} {entries[key]}, not {value}: "
                                          f"destroy it first (state: absent) to change it")
        base = self.p["base"]
        if base is not None and "base" in entries:
            wanted = base if "/" in base else os.path.join(self.p["state_dir"], "bases", base)
            if os.path.realpath(wanted) != os.path.realpath(entries["base"]):
                self.module.fail_json(msg=f"tenant {self.name} exists on base {entries['base']}, not {base}: "
                                          f"destroy it first (state: absent) to change it")

    def update(self, text, entries):
        """Rewrites the options that may change; True when the file changed."""
        services = self.p["services"]
        if services is not None and config_services(entries) == services:
            services = None
        wanted = rewrite_config(text, entries, self.desired_mutable(), services)
        wanted_entries = self.read(wanted)
        if config_values(wanted_entries) == config_values(entries) \
                and config_services(wanted_entries) == config_services(entries):
            return False
        self.diff["before"]["config"] = config_values(entries)
        self.diff["after"]["config"] = config_values(wanted_entries)
        if not self.module.check_mode:
            temporary = self.config_path + ".tmp"
            with open(temporary, "w", newline="") as f:
                f.write(wanted)
            os.chmod(temporary, 0o644)
            os.rename(temporary, self.config_path)
        self.commands.append(f"rewrite {self.config_path}")
        self.changed = True
        return True

    def update_host_keys(self):
        """The host account's authorized keys hold every key asked for (others are kept)."""
        account = self.host_account()
        if not self.p["keys"] or account is None:
            return
        path = os.path.join(account.pw_dir, ".ssh", "authorized_keys")
        try:
            with open(path) as f:
                present = f.read()
        except FileNotFoundError:
            present = ""
        have = {key_body(line) for line in present.splitlines()}
        missing = [key for key in self.p["keys"] if key_body(key) not in have]
        if not missing:
            return
        self.changed = True
        self.commands.append(f"add {len(missing)} key(s) to {path}")
        if self.module.check_mode:
            return
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "a") as f:
            if present and not present.endswith("\n"):
                f.write("\n")
            lead = key_options(config_values(self.read(self.config_text() or "")))
            f.write("\n".join(f"{lead} {k.strip()}" for k in missing) + "\n")

    def run(self):
        state = self.p["state"]
        text = self.config_text()
        exists = text is not None
        was_running = self.running()
        self.diff = {"before": {"state": "absent" if not exists else ("started" if was_running else "stopped")},
                     "after": {}}
        if state == "absent":
            if exists or self.host_account() is not None:
                self.jaild("destroy", self.name, "--yes")
                self.changed = True
            self.diff["after"]["state"] = "absent"
            return self.result(False)
        reconfigured = False
        if not exists:
            self.create()
        else:
            entries = self.read(text)
            self.check_fixed(config_values(entries))
            reconfigured = self.update(text, entries)
            self.update_host_keys()
        running = was_running
        if state == "started":
            if running and reconfigured:
                self.jaild("stop", self.name)
                running = False
            if not running:
                self.jaild("start", self.name)
                self.changed = True
                running = True
        elif state == "stopped" and running:
            self.jaild("stop", self.name)
            self.changed = True
            running = False
        self.diff["after"]["state"] = "started" if running else ("stopped" if state != "absent" else "absent")
        return self.result(running)

    def result(self, running):
        text = self.config_text()
        out = {"changed": self.changed, "running": running, "commands": self.commands}
        if text is not None:
            out["config"] = config_values(self.read(text))
        if self.module._diff:
            out["diff"] = self.diff
        return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            uid=dict(type="int"),
            gid=dict(type="int"),
            base=dict(type="str"),
            user=dict(type="str", default="work"),
            keys=dict(type="list", elements="str", default=[], no_log=False),
            ports=dict(type="str"),
            address=dict(type="str"),
            loopback=dict(type="str"),
            memory=dict(type="str"),
            pids=dict(type="int"),
            cpus=dict(type="float"),
            rc=dict(type="str"),
            init=dict(type="str"),
            services=dict(type="list", elements="str"),
            state=dict(type="str", default="started", choices=["present", "absent", "started", "stopped"]),
            jaild=dict(type="path", default="/usr/local/sbin/jaild"),
            config_dir=dict(type="path", default="/etc/jail"),
            state_dir=dict(type="path", default="/var/lib/jail"),
            sshd_config_dir=dict(type="path", default="/etc/ssh/sshd_config.d"),
        ),
        supports_check_mode=True,
    )
    if os.geteuid() != 0:
        module.fail_json(msg="jail_tenant needs root (become: true): jaild create makes host accounts")
    module.exit_json(**Tenant(module).run())


if __name__ == "__main__":
    main()
