"""routable.py SOCKET NODE...: exit 0 once the receptor behind SOCKET routes to every NODE.

Used by the demo and by mesh-up (python3 is there anyway for ansible-runner)."""
import json
import socket
import sys

s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
f.write("status\n")
f.flush()
table = json.loads(f.readline())["RoutingTable"] or {}
sys.exit(0 if all(n in table for n in sys.argv[2:]) else 1)
