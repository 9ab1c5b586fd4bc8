#!/usr/bin/env python3
"""Cross-node search freshness: creates events on node A and measures how long until
node B's search lists them (issue target: within 1 s).

    scripts/cluster.sh up 2
    scripts/search-freshness.py http://127.0.0.1:8081 http://127.0.0.1:8082 [RUNS]

Needs --dev-auth on node A (cluster.sh's --demo turns it on)."""
import json, sys, time, urllib.request, statistics
a, b = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
def call(method, url, body=None, token=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header('content-type', 'application/json')
    if token: req.add_header('authorization', 'Bearer ' + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b'null')
token = call('POST', a + '/v1/auth/token', {"user": "fresh-admin", "role": "admin"})["token"]
venue = call('POST', a + '/v1/venues', {"name": "Fresh Hall", "city": "Freshville", "lat": 1.0, "lon": 2.0,
        "tiers": ["standard"], "sections": [{"name": "A", "rows": 2, "seats_per_row": 4}]}, token)["id"]
delays = []
for i in range(runs):
    word = "zq%06dx" % (int(time.time() * 1000) % 1000000 + i)
    t0 = time.monotonic()
    ev = call('POST', a + '/v1/events', {"name": "Freshness " + word, "venue_id": venue, "category": "concert",
        "starts_at": "2027-06-01T20:00:00Z", "onsale_at": "2026-01-01T00:00:00Z",
        "prices": {"standard": {"amount": 1000, "currency": "USD"}}}, token)["id"]
    created = time.monotonic()
    while True:
        page = call('GET', b + '/v1/search?q=' + word)
        if any(item["id"] == ev for item in page["items"]):
            break
        if time.monotonic() - created > 10:
            print("not found in 10 s:", ev); break
        time.sleep(0.005)
    delays.append((time.monotonic() - created) * 1000)
delays.sort()
print("events made on A, found by search on B: n=%d p50=%.0f ms p90=%.0f ms max=%.0f ms (from the 201 of POST /v1/events to the first search answer that lists it; polled every 5 ms)" % (
    len(delays), statistics.median(delays), delays[int(len(delays) * 0.9) - 1], delays[-1]))
