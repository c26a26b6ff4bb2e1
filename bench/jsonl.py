"""One JSON-RPC call at a time over a process's stdin/stdout (JSON lines): the client loop
bench/lat.py (`rawstdio`) and bench/stdio_cpu.py share, so both drive a bridge alike."""

import json


def line_caller(proc):
    """A function that writes one message to `proc` and, for a request, returns its answer
    (skipping notifications and the server's own requests in between)."""

    def call(message):
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
        if "id" not in message:
            return None
        while True:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("the bridge closed its stdout")
            answer = json.loads(line)
            if answer.get("id") == message["id"] and "method" not in answer:
                return answer

    return call
