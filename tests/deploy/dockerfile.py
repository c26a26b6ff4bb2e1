#!/usr/bin/env python3
"""Reads deploy/Dockerfile the way the test suite needs it, without a container engine.

    dockerfile.py image DOCKERFILE
        Prints the final stage as JSON: base image, ENV, WORKDIR, USER, EXPOSE, LABELs,
        ENTRYPOINT, CMD, HEALTHCHECK (exec form), and every COPY --from (source in the build
        stage's WORKDIR, destination in the image). The e2e tests run the binary with exactly
        this environment and argv.

    dockerfile.py build DOCKERFILE CONTEXT
        Runs the RUN lines of the stage named `build` in CONTEXT (standing in for its WORKDIR),
        with that stage's ENV, after dropping BuildKit's `--mount=`/`--network=` options. The
        cache mounts only speed up rebuilds, so the commands are the same.

    dockerfile.py context DOCKERFILE SOURCE DEST
        Makes DEST hold exactly the files of SOURCE (a checkout) that the build context
        keeps, per <DOCKERFILE>.dockerignore, and lists them on stdout. Files whose content
        did not change are left alone (their old mtime keeps cargo's fingerprints fresh, so a
        rebuild only compiles what changed); DEST's build outputs (target/, out/) are kept.

Understood: ARG (with defaults), FROM ... AS, ENV k=v (several per line), WORKDIR, USER,
EXPOSE, LABEL, COPY [--from=stage] src dst, RUN (shell form), ENTRYPOINT/CMD/HEALTHCHECK in
exec (JSON) form, line continuations and comments. Anything else is an error, so a Dockerfile
change this script cannot follow fails the suite instead of being skipped.
"""

import filecmp
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

KNOWN = {"ARG", "FROM", "ENV", "WORKDIR", "USER", "EXPOSE", "LABEL", "COPY", "RUN",
         "ENTRYPOINT", "CMD", "HEALTHCHECK"}


def instructions(path):
    """(keyword, rest) for each instruction, continuations joined, comments dropped."""
    result, pending = [], ""
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if pending and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            pending += line
            keyword, _, rest = pending.strip().partition(" ")
            keyword = keyword.upper()
            if keyword not in KNOWN:
                raise SystemExit(f"dockerfile.py: unsupported instruction {keyword} in {path}")
            result.append((keyword, rest.strip()))
            pending = ""
    if pending:
        raise SystemExit(f"dockerfile.py: {path} ends inside a continued line")
    return result


def substitute(text, variables):
    """${NAME} / $NAME from `variables` (ARG and ENV values seen so far)."""
    def value(match):
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise SystemExit(f"dockerfile.py: ${name} is not defined")
        return variables[name]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", value, text)


def pairs(rest, variables):
    """`k=v k2="v 2"` into a list of (k, v), values substituted."""
    out = []
    for word in shlex.split(rest):
        key, sep, val = word.partition("=")
        if not sep:
            raise SystemExit(f"dockerfile.py: expected key=value, got {word!r}")
        out.append((key, substitute(val, variables)))
    return out


def stages(path):
    """Every stage as a dict, in order; global ARG defaults included."""
    global_args, result, stage = {}, [], None
    for keyword, rest in instructions(path):
        if keyword == "ARG" and stage is None:
            name, _, default = rest.partition("=")
            global_args[name] = default
            continue
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stage = {"name": name, "from": substitute(words[0], global_args), "args": {},
                     "env": {}, "workdir": "/", "user": None, "expose": [], "labels": {},
                     "copies": [], "run": [], "entrypoint": None, "cmd": None,
                     "healthcheck": None}
            result.append(stage)
            continue
        if stage is None:
            raise SystemExit(f"dockerfile.py: {keyword} before FROM")
        variables = {**stage["args"], **stage["env"]}
        if keyword == "ARG":
            name, sep, default = rest.partition("=")
            stage["args"][name] = default if sep else global_args.get(name, "")
        elif keyword == "ENV":
            stage["env"].update(pairs(rest, variables))
        elif keyword == "LABEL":
            stage["labels"].update(pairs(rest, variables))
        elif keyword == "WORKDIR":
            stage["workdir"] = substitute(rest, variables)
        elif keyword == "USER":
            stage["user"] = rest
        elif keyword == "EXPOSE":
            stage["expose"].extend(rest.split())
        elif keyword == "COPY":
            words = rest.split()
            source_stage = None
            if words[0].startswith("--from="):
                source_stage = words.pop(0)[len("--from="):]
            if len(words) != 2:
                raise SystemExit(f"dockerfile.py: COPY needs one source and one destination: {rest}")
            stage["copies"].append({"from": source_stage, "src": words[0], "dst": words[1]})
        elif keyword == "RUN":
            command = rest
            while re.match(r"--(mount|network|security)=\S+\s", command):
                command = command.split(None, 1)[1]
            stage["run"].append(command)
        elif keyword in ("ENTRYPOINT", "CMD"):
            stage[keyword.lower()] = exec_form(keyword, rest)
        elif keyword == "HEALTHCHECK":
            options = {}
            while rest.startswith("--"):
                option, rest = rest.split(None, 1)
                key, _, val = option[2:].partition("=")
                options[key] = val
            if not rest.startswith("CMD "):
                raise SystemExit("dockerfile.py: HEALTHCHECK must be `CMD [exec form]`")
            stage["healthcheck"] = {"options": options, "test": exec_form("HEALTHCHECK", rest[4:])}
    return result


def exec_form(keyword, rest):
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        raise SystemExit(f"dockerfile.py: {keyword} must be in exec (JSON array) form: {rest}")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SystemExit(f"dockerfile.py: {keyword} must be a JSON array of strings")
    return value


def stage_named(all_stages, name):
    for stage in all_stages:
        if stage["name"] == name:
            return stage
    raise SystemExit(f"dockerfile.py: no stage named {name!r}")


def image(path):
    all_stages = stages(path)
    final = all_stages[-1]
    copies = []
    for copy in final["copies"]:
        entry = dict(copy)
        if copy["from"]:
            workdir = stage_named(all_stages, copy["from"])["workdir"].rstrip("/") + "/"
            if copy["src"].startswith(workdir):
                entry["src_relative_to_workdir"] = copy["src"][len(workdir):]
        copies.append(entry)
    out = {key: final[key] for key in ("from", "env", "workdir", "user", "expose", "labels",
                                       "entrypoint", "cmd", "healthcheck")}
    out["copies"] = copies
    out["build_stage_args"] = {stage["name"]: stage["args"] for stage in all_stages if stage["name"]}
    out["global_from"] = [stage["from"] for stage in all_stages]
    print(json.dumps(out, indent=2))


def build(path, context):
    build_stage = stage_named(stages(path), "build")
    env = dict(os.environ)
    env.update(build_stage["env"])
    for command in build_stage["run"]:
        print(f"dockerfile.py: RUN {command}", file=sys.stderr, flush=True)
        subprocess.run(["/bin/sh", "-ec", command], cwd=context, env=env, check=True)


def ignore_patterns(path):
    ignore = path + ".dockerignore"
    patterns = []
    with open(ignore, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line)
    return patterns


def kept(relative, patterns):
    """Docker's rule: the last matching pattern decides; a pattern also matches every path
    below a matching directory."""
    keep = True
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        clean = pattern[1:] if negate else pattern
        clean = clean.strip("/")
        if any(fnmatch.fnmatchcase(prefix, clean) for prefix in prefixes):
            keep = negate
    return keep


BUILD_OUTPUTS = {"target", "out"}


def context(path, source, dest):
    patterns = ignore_patterns(path)
    files = subprocess.run(["git", "-C", source, "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    wanted = {relative for relative in files if relative and kept(relative, patterns)}
    for relative in sorted(wanted):
        origin = os.path.join(source, relative)
        target = os.path.join(dest, relative)
        if not (os.path.isfile(target) and filecmp.cmp(origin, target, shallow=False)):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(origin, target)
        print(relative)
    for directory, subdirectories, names in os.walk(dest):
        here = os.path.relpath(directory, dest)
        if here == ".":
            subdirectories[:] = [d for d in subdirectories if d not in BUILD_OUTPUTS]
        for name in names:
            relative = os.path.normpath(os.path.join(here, name))
            if relative not in wanted:
                os.remove(os.path.join(directory, name))


def main(argv):
    if len(argv) >= 3 and argv[1] == "image":
        image(argv[2])
    elif len(argv) == 4 and argv[1] == "build":
        build(argv[2], argv[3])
    elif len(argv) == 5 and argv[1] == "context":
        context(argv[2], argv[3], argv[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
