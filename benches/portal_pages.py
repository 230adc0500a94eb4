#!/usr/bin/env python3
"""Time the portal's pages in headless Chromium against a running server.

A page counts as rendered when no section of it is still loading: no element
with the `loading` class, no "Loading…" or "Diagnosing…" placeholder, and (on a host page)
every chart box holding a chart or a message. Each page is visited `--runs`
times, each visit from a blank page so nothing is reused but the browser's
module cache.

    python3 benches/portal_pages.py --url http://127.0.0.1:28086 \
        --page '#/fleet' --page '#/host/host_4242' --page '#/job/job_001466'

Needs `selenium` (PyPI) and Debian's `chromium` and `chromium-driver`.
"""

import argparse
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SETTLED = """
const busy = document.querySelector('.loading')
  || [...document.querySelectorAll('p.muted')].some((p) => ['Diagnosing…', 'Loading…'].includes(p.textContent))
  || [...document.querySelectorAll('.host-chart')].some((b) => b.children.length < 2);
return !busy && document.querySelector('main, #app, body').textContent.length > 0;
"""


def visit(driver, url, timeout):
    driver.get("about:blank")
    start = time.perf_counter()
    driver.get(url)
    while time.perf_counter() - start < timeout:
        if driver.execute_script(SETTLED):
            return time.perf_counter() - start
        time.sleep(0.01)
    raise TimeoutError(f"{url} still loading after {timeout} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--page", action="append", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--token", help="a bearer token the UI stores for its requests")
    args = ap.parse_args()

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        base = args.url.rstrip("/") + "/"
        if args.token:
            driver.get(base)
            driver.execute_script("localStorage.setItem('fleetlake.token', arguments[0]);", args.token)
        visit(driver, base + args.page[0], args.timeout)  # warm the module cache
        for page in args.page:
            times = [visit(driver, base + page, args.timeout) for _ in range(args.runs)]
            print(f"{page}\t" + " / ".join(f"{t * 1000:,.0f} ms" for t in times))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
