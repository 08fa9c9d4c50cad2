# free-ports.sh - sourced by the scripts and tests that start a whole troop
# on fixed ports (troop demo takes a base port and uses the next two):
#
#   free_base [N]   print a port P such that P .. P+N-1 (default 3) are free
#                   on 127.0.0.1 now, below the kernel's ephemeral range
#                   (so a client socket cannot take one meanwhile)
free_base() {
python3 - "${1:-3}" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    b = random.randrange(12000, 30000)
    socks = []
    try:
        for p in range(b, b + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(b); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
}
