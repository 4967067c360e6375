#!/usr/bin/env bash
# Clients that pipeline requests the edge answers on its own thread (here
# GET /openapi.yaml, 71 KB per answer for a 40-byte request): the node's peak
# memory (VmHWM) and the worst /healthz latency on another connection, for
# CLIENTS connections that never read (1,600 requests written at once each)
# and then CLIENTS that read (256 requests each, every answer taken).
# Usage: bench/wrk/pipeline_flood.sh [shopd binary]   (CLIENTS=40 by default)
# Starts its own shopd on 127.0.0.1:${PORT:-18994} with a fresh data dir for each
# half, and stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHOPD=${1:-build/cluster/shopd}
PORT=${PORT:-18994}
CLIENTS=${CLIENTS:-40}
. bench/wrk/node.sh
for mode in silent readers; do
  start_shopd "$SHOPD"
  python3 - "$PORT" "$PID" "$CLIENTS" "$mode" <<'PY'
import socket, sys, threading, time
port, pid, clients, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def peak_kb():
    return int([l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")][0])
request = b"GET /openapi.yaml HTTP/1.1\r\nHost: bench\r\n\r\n"
before = peak_kb()
answers = [0] * clients
def reader(i):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request * 256)
    tail, n = b"", 0
    while n < 256:
        b = s.recv(1 << 20)
        if not b:
            break
        # (The document holds no status line. The tail kept is one byte short of
        # one, so a status line is counted in the read that completes it only.)
        n += (tail + b).count(b"HTTP/1.1 200 OK")
        tail = (tail + b)[-14:]
    answers[i] = n
    s.close()
held, threads = [], []
if mode == "silent":
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request * 1600)  # 62 KB, and never a read
        held.append(s)
else:
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
probe = socket.create_connection(("127.0.0.1", port), timeout=60)
worst, began = 0.0, time.time()
while (time.time() - began < 6) if mode == "silent" else any(t.is_alive() for t in threads):
    t0 = time.time()
    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
    got = b""
    while not got.endswith(b"}"):
        got += probe.recv(4096)
    worst = max(worst, time.time() - t0)
    time.sleep(0.05)
for t in threads:
    t.join()
line = f"{mode}: {clients} clients, peak memory {before // 1024} -> {peak_kb() // 1024} MiB, worst /healthz {worst * 1000:.0f} ms"
if mode == "readers":
    line += f", answers {sum(answers)} of {256 * clients}"
print(line)
PY
  stop_shopd
  trap - EXIT
done
