# Helpers shared by the bench scripts; sourced by them, not run on its own.

# free_port -> a TCP port on 127.0.0.1 that nothing listens on now
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: returns once something accepts on 127.0.0.1:PORT, polling every 50 ms at most
# WAIT_PORT_TRIES times (default 400, 20 s); fails with a message after that.
wait_port() {
  for _ in $(seq 1 "${WAIT_PORT_TRIES:-400}"); do
    (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  return 1
}
