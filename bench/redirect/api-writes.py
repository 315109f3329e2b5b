#!/usr/bin/env python3
"""API writes at a fixed rate: POST /api/v1/links, one link a request, on one keep-alive
connection. Prints one line of key=value figures: count, errors, p50_ms, p99_ms, max_ms.

Usage: api-writes.py URL KEY BOT RATE SECONDS
Latency runs from the request's scheduled time (a late send counts its wait) to the whole
answer read.
"""
import http.client
import json
import sys
import time
from urllib.parse import urlparse

url, key, bot, rate, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
u = urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
body = json.dumps({"bot_id": bot, "channels": ["telegram"]})
n = int(rate * seconds)
start = time.monotonic()
lat, errors = [], 0
for i in range(n):
    due = start + i / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    try:
        conn.request("POST", "/api/v1/links", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            errors += 1
    except (OSError, http.client.HTTPException):
        errors += 1
        conn.close()
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    lat.append((time.monotonic() - due) * 1000)
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"count={len(lat)} errors={errors} p50_ms={pick(0.5):.2f} p99_ms={pick(0.99):.2f} max_ms={lat[-1]:.2f}")
