"""The console's browser tests: Debian's Chromium, headless, driven by Playwright.

Run by tests/console.rs, which starts the mesh (with a fault it can remove)
and answers this script's requests on stdin/stdout:

  python console.py --base http://127.0.0.1:PORT --admin-token TOKEN [--screenshots DIR]

Each step checks what the page shows, not only that it loaded. A failed
step raises, and the script exits non-zero naming it.
"""

import argparse
import json
import pathlib
import struct
import sys
import time
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

DECLINED = "4000 0000 0000 0002"
GREEN = "#dcfce7"  # the workflow's fill for a state that succeeded
RED = "#fee2e2"  # ... and for one that failed
IN_PROGRESS = "#dbeafe"
# axe-core, installed by build-support/install-tools.sh; evaluated in each
# page (page.evaluate is not subject to the console's Content-Security-Policy).
AXE = pathlib.Path(__file__).resolve().parents[2] / ".tools/npm/node_modules/axe-core/axe.min.js"


def say(text):
    print(text, flush=True)


def ask(request):
    """Asks the Rust harness to do something; waits for its `done`."""
    say(f"REQUEST {request}")
    answer = sys.stdin.readline().strip()
    if answer != "done":
        raise AssertionError(f"the harness answered {answer!r} to {request}")


def grpc_web(base, path, body, key=None):
    """A gRPC-Web JSON call from outside the browser (background traffic)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/{path}", data=struct.pack(">BI", 0, len(data)) + data, method="POST")
    request.add_header("content-type", "application/grpc-web+json")
    if key:
        request.add_header("x-api-key", key)
    with urllib.request.urlopen(request, timeout=10) as response:
        grpc_web.correlation_id = response.headers.get("x-correlation-id")
        grpc_web.message = urllib.parse.unquote(response.headers.get("grpc-message") or "")
        return response.headers.get("grpc-status"), response.read()


def calls(base, key, n, path="ferrymesh.catalog.v1.CatalogService/GetProduct", body=None):
    """`n` answered calls, paced under the free plan's 10 per second."""
    done = 0
    deadline = time.time() + 60
    while done < n:
        assert time.time() < deadline, f"only {done} of {n} calls were answered"
        status, _ = grpc_web(base, path, body if body is not None else {"product_id": "mug"}, key)
        if status in (None, "0"):
            done += 1
        time.sleep(0.13)


def check_accessible(page, what):
    """Every form control has a name; the page fits a phone's width."""
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
            .map(el => el.outerHTML.slice(0, 80))"""
    )
    assert not unnamed, f"{what}: controls without a label: {unnamed}"
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text())
    serious = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`)"""
    )
    assert not serious, f"{what}: axe finds serious or critical violations: {serious}"
    check_accessible.pages.add(what)


check_accessible.pages = set()


def fits_phone(browser, url, what, prepare=None):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    if prepare:
        prepare(page)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                    && !e.closest('.table-wrap, .graph, pre, .logs'))
            .map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').slice(0, 40))
            .slice(0, 5)"""
    )
    assert overflow <= 1, f"{what} is {overflow}px wider than a phone's screen: {wide}"
    # Text drawn in charts and graphs stays readable once scaled to the screen.
    smallest = page.evaluate(
        """() => Math.min(1e9, ...[...document.querySelectorAll('svg text')].map(t => {
            const svg = t.ownerSVGElement, box = svg.viewBox.baseVal;
            const scale = box && box.width ? svg.getBoundingClientRect().width / box.width : 1;
            return parseFloat(getComputedStyle(t).fontSize) * scale; }))"""
    )
    assert smallest >= 10.5, f"{what} draws text at {smallest:.1f}px on a phone"
    context.close()


def newcomer(browser, base, shots):
    say("STEP newcomer: registers")
    context = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.goto(f"{base}/")
    # The keyboard reaches the skip link first.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    check_accessible(page, "the home page")
    page.get_by_role("link", name="Developer portal").first.click()
    expect(page.get_by_role("heading", name="Developer portal")).to_be_visible()
    expect(page).to_have_title("Developer portal · ferrymesh console")
    check_accessible(page, "the sign-up page")

    say("STEP newcomer: a key that is not one is refused, once, and signs no one in")
    use = page.locator("section", has=page.get_by_role("heading", name="I have a key"))
    use.get_by_label("API key").fill("garbage")
    use.get_by_role("button", name="Use this key").click()
    expect(use.get_by_role("alert")).to_have_count(1)
    expect(use.get_by_role("alert")).to_contain_text("not an API key")
    use.get_by_label("API key").fill("fmk_" + "x" * 40)
    use.get_by_role("button", name="Use this key").click()
    expect(use.get_by_role("alert")).to_contain_text("refused", timeout=10000)
    expect(page.get_by_role("alert")).to_have_count(1)
    expect(page.locator("#current-key-prefix")).to_have_count(0)
    email = f"newcomer-{int(time.time() * 1000)}@example.com"
    page.get_by_label("Email").fill(email)
    page.get_by_label("Name").fill("Nia Newcomer")
    page.get_by_role("button", name="Register").click()
    key = page.locator("#new-key").inner_text(timeout=10000).strip()
    assert key.startswith("fmk_") and len(key) > 30, key

    say("STEP newcomer: copies the key")
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == key, f"the clipboard holds {copied!r}, not the key shown"
    page.get_by_role("button", name="Continue with this key").click()
    expect(page.locator("#current-key-prefix")).to_have_text(key[:12] + "…")
    expect(page.locator("#keys-h")).to_be_visible()
    # The key is listed, active.
    expect(page.get_by_role("row").filter(has_text=key[:12])).to_contain_text("ACTIVE")
    # No calls yet: the usage card says so instead of an empty chart; the
    # test cards are listed here, not in a README a browser cannot see.
    expect(page.locator("#usage-empty")).to_contain_text("No calls yet")
    check_accessible(page, "the portal")

    say("STEP newcomer: calls GetProduct through try it")
    page.goto(f"{base}/#/reference/ferrymesh.catalog.v1.CatalogService")
    section = page.locator("section", has=page.get_by_role("heading", name="GetProduct", exact=False)).first
    expect(section).to_contain_text("GetProductRequest")
    expect(page).to_have_title("catalog.v1.CatalogService · API reference · ferrymesh console")
    # Each template works sent as it is.
    for method, answer in [("ListProducts", '"price"'), ("SearchProducts", '"Mug"'), ("GetProduct", '"Mug"')]:
        one = page.locator("section", has=page.get_by_role("heading", name=method, exact=False)).first
        one.get_by_role("button", name=f"Send {method}").click()
        expect(one.locator(".try-response")).to_contain_text(answer, timeout=10000)
    section.get_by_label("GetProduct request as JSON").fill('{"product_id": "mug"}')
    section.get_by_role("button", name="Send GetProduct").click()
    response = section.locator(".try-response")
    expect(response).to_contain_text('"name": "Mug"', timeout=10000)
    expect(response).to_contain_text('"currency_code": "USD"')
    # A bad request shows the status and what to fix.
    section.get_by_label("GetProduct request as JSON").fill('{"product_idd": "mug"}')
    section.get_by_role("button", name="Send GetProduct").click()
    expect(section.get_by_role("alert")).to_contain_text("INVALID_ARGUMENT")
    expect(section.get_by_role("alert")).to_contain_text("product_idd")
    check_accessible(page, "the API reference")

    say("STEP newcomer: places an order and watches its saga turn green")
    page.goto(f"{base}/#/portal")
    form = page.locator("#order-h").locator("..")
    form.get_by_role("button", name="Start a test order").click()
    form.get_by_text("Test cards").click()
    expect(page.locator("#test-cards")).to_contain_text("4000 0000 0000 0002")
    form.get_by_label("Product").select_option("mug")
    form.get_by_label("Quantity").fill("2")
    form.get_by_role("button", name="Place order").click()
    expect(page.locator("#order-status")).to_have_text("CONFIRMED", timeout=30000)
    for step in ["Reserve stock", "Charge card", "Create shipment", "Confirm order", "Commit stock"]:
        expect(page.locator(f'[data-step="{step}"]')).to_have_attribute("data-progress", "succeeded", timeout=15000)
    svg = page.locator("#order-graph svg").inner_html()
    assert svg.count(GREEN) >= 5 and IN_PROGRESS not in svg, "the graph is not green on the path taken"
    order_id = page.locator("#order-id").inner_text()

    say("STEP newcomer: sees the calls on the usage chart and the invoice")
    # The calls the newcomer made (try it, the order); the portal's own
    # reads of usage, keys and invoice are not billed.
    page.wait_for_function("() => Number(document.querySelector('#usage-total')?.dataset.total) >= 2", timeout=20000)
    expect(page.get_by_role("img", name="Calls per day by method")).to_be_visible()
    expect(page.locator("#invoice-total")).to_contain_text("USD")
    if shots:
        # Once the order's calls are on the chart.
        page.wait_for_function("() => Number(document.querySelector('#usage-total')?.dataset.total) >= 8", timeout=20000)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=f"{shots}/portal.png", full_page=False)
    say("STEP newcomer: rotates the key, then revokes the old one")
    page.evaluate("window.scrollTo(0, 0)")
    page.get_by_role("button", name="Rotate the key you are using").click()
    new_key = page.locator("#new-key").inner_text(timeout=10000).strip()
    assert new_key.startswith("fmk_") and new_key != key
    expect(page.locator("#current-key-prefix")).to_have_text(new_key[:12] + "…")
    old_row = page.get_by_role("row").filter(has_text=key[:12])
    expect(old_row).to_contain_text("ACTIVE")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Revoke key {key[:12]}").click()
    expect(page.get_by_role("row").filter(has_text=key[:12])).to_contain_text("REVOKED", timeout=10000)
    expect(page.get_by_role("row").filter(has_text=new_key[:12])).to_contain_text("ACTIVE")
    deadline = time.time() + 15
    while grpc_web(base, "ferrymesh.catalog.v1.CatalogService/GetProduct", {"product_id": "mug"}, key)[0] in (None, "0"):
        assert time.time() < deadline, "the revoked key still works"
        time.sleep(0.3)

    say("STEP newcomer: cannot revoke the last key, and is told why")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name=f"Revoke key {new_key[:12]}").click()
    expect(page.get_by_role("alert")).to_contain_text("last usable key", timeout=10000)
    expect(page.get_by_role("alert")).to_contain_text("RotateMyKey")
    expect(page.get_by_role("row").filter(has_text=new_key[:12])).to_contain_text("ACTIVE")
    assert asked and "Revoke" in asked[0], asked

    say("STEP newcomer: the revoked key signs no one in")
    other = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    stale = other.new_page()
    stale.goto(f"{base}/#/portal")
    stale.get_by_label("API key").fill(key)
    stale.get_by_role("button", name="Use this key").click()
    expect(stale.get_by_role("alert")).to_contain_text("refused", timeout=10000)
    expect(stale.get_by_role("alert")).to_have_count(1)
    expect(stale.locator("#current-key-prefix")).to_have_count(0)
    other.close()
    key = new_key

    fits_phone(browser, f"{base}/#/portal", "the portal",
               prepare=lambda p: p.add_init_script(f"sessionStorage.setItem('ferrymesh.key', {json.dumps(key)})"))
    context.close()
    say(f"KEY {key}")
    say(f"ORDER {order_id}")
    return key, email


def idle_portal(browser, base):
    """A developer's portal tab left open: it polls (only while visible),
    and none of it is billed. Returns what check_idle needs."""
    say("STEP idle: a developer leaves the portal open")
    status, body = grpc_web(base, "ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper",
                            {"email": f"idle-{int(time.time() * 1000)}@example.com", "name": "Ida Idle"})
    assert status in (None, "0"), status
    frames = body[5:5 + struct.unpack(">I", body[1:5])[0]]
    idle_key = json.loads(frames)["secret"]
    context = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    context.add_init_script(f"sessionStorage.setItem('ferrymesh.key', {json.dumps(idle_key)})")
    page = context.new_page()
    polls = []
    page.on("request", lambda r: polls.append(time.time()) if r.url.endswith("/GetMyUsage") else None)
    page.goto(f"{base}/#/portal")
    expect(page.locator("#usage-total")).to_have_attribute("data-total", "0", timeout=10000)
    return context, page, idle_key, polls, time.time()


def usage_of(base, key):
    """The developer's calls in the last day, read as the portal reads them (not billed)."""
    today = int(time.time()) // 86400 * 86400
    body = {"start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(today - 86400)),
            "end_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(today + 86400)), "granularity": "USAGE_GRANULARITY_DAY"}
    status, raw = grpc_web(base, "ferrymesh.apikeys.v1.DeveloperPortalService/GetMyUsage", body, key)
    assert status in (None, "0"), (status, grpc_web.message)
    answer = json.loads(raw[5:5 + struct.unpack(">I", raw[1:5])[0]])
    return int(answer.get("total", 0))


def check_idle(base, idle):
    context, page, idle_key, polls, opened = idle
    say("STEP idle: a minute later, the open tab has cost the developer nothing")
    # Waited through Playwright, so the tab's requests are seen as they happen.
    page.wait_for_timeout(max(0.0, 61 - (time.time() - opened)) * 1000)
    seen = len(polls)
    assert seen >= 6, f"the visible tab polled its usage {seen} times in a minute"
    # Flushed every second: anything the tab had been billed would show.
    page.wait_for_timeout(2500)
    assert usage_of(base, idle_key) == 0, "the portal's own polling was billed to the developer"
    expect(page.locator("#usage-total")).to_have_attribute("data-total", "0")
    # Hidden, the tab makes no calls at all; seen again, it refreshes at once.
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    before = len(polls)
    page.wait_for_timeout(11000)
    assert len(polls) == before, f"a hidden tab polled {len(polls) - before} times"
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    deadline = time.time() + 3
    while len(polls) == before:
        assert time.time() < deadline, "the tab did not refresh when seen again"
        page.wait_for_timeout(100)
    context.close()


def operator(browser, base, token, key, email, shots):
    idle = idle_portal(browser, base)
    say("STEP operator: a developer's order is declined, and its compensation fails")
    dev = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    dev.add_init_script(f"sessionStorage.setItem('ferrymesh.key', {json.dumps(key)})")
    developer = dev.new_page()
    developer.goto(f"{base}/#/portal")
    form = developer.locator("#order-h").locator("..")
    form.get_by_role("button", name="Start a test order").click()
    form.get_by_label("Card number").fill(DECLINED)
    form.get_by_role("button", name="Place order").click()
    order_id = developer.locator("#order-id").inner_text(timeout=15000)
    expect(developer.locator('[data-step="Release stock"]')).to_have_attribute("data-progress", "failed", timeout=30000)

    say("STEP operator: signs in with the admin token")
    context = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.goto(f"{base}/#/ops")
    page.get_by_label("Admin token").fill("not-the-token-0000")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="The mesh at a glance")).to_be_visible()
    for service in ["catalog", "inventory", "payments", "shipping", "orders", "workflow", "apikeys", "gateway"]:
        expect(page.locator(f'[data-service="{service}"]')).to_have_text("SERVING", timeout=10000)
    check_accessible(page, "the mesh view")

    say("STEP operator: watches the RED metrics move")
    page.get_by_role("link", name="RED metrics").click()
    calls(base, key, 10)
    rate = page.locator('[data-service="catalog"][data-method="ferrymesh.catalog.v1.CatalogService/GetProduct"]')
    expect(rate).to_be_visible(timeout=15000)
    deadline = time.time() + 20
    while float(rate.get_attribute("data-rate")) <= 0:
        assert time.time() < deadline, "GetProduct's rate never rose above 0"
        calls(base, key, 2)
    # The gateway's own histogram of the same calls, beside catalog's.
    expect(page.locator('[data-service="gateway"][data-method="ferrymesh.catalog.v1.CatalogService/GetProduct"]')).to_be_visible()
    if shots:
        for _ in range(4):
            calls(base, key, 8)
            calls(base, key, 2, "ferrymesh.catalog.v1.CatalogService/ListProducts", {})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=f"{shots}/red.png", full_page=False)
    # A caller's mistake is counted as one, with its code, not as a fault.
    for _ in range(3):
        grpc_web(base, "ferrymesh.catalog.v1.CatalogService/GetProduct", {"product_id": "no-such-product"}, key)
    row = page.locator('tr[data-row="catalog ferrymesh.catalog.v1.CatalogService/GetProduct"]')
    expect(row.locator("td").nth(2)).to_contain_text("NOT_FOUND", timeout=15000)
    expect(row.locator("td").nth(4)).to_have_text("0%")
    # Sortable; a method's latency over time on click.
    page.get_by_role("button", name="p99 (ms)").click()
    expect(page.locator("th", has=page.get_by_role("button", name="p99 (ms)"))).to_have_attribute("aria-sort", "descending")
    row.get_by_role("button", name="Latency over time of ferrymesh.catalog.v1.CatalogService/GetProduct in catalog").click()
    expect(page.locator("tr.detail").first).to_contain_text("Latency over the last minute")
    # Only methods with traffic: nothing of the unused v1 orders API.
    expect(page.locator('[data-method="ferrymesh.orders.v1.OrdersService/CancelOrder"]')).to_have_count(0)
    check_accessible(page, "the RED metrics")

    say("STEP operator: the mesh page says an execution needs an operator, and which")
    page.get_by_role("link", name="Mesh", exact=True).click()
    expect(page.locator("#attention")).to_contain_text("needs an operator", timeout=15000)
    # This mesh runs no periodic audit; the card says how to start one.
    expect(page.locator("#audit")).to_contain_text("ferrymesh up --audit-every 1m")
    page.get_by_role("link", name="see which, and why").click()
    expect(page.get_by_label("Needs an operator")).to_be_checked()
    row = page.get_by_role("row").filter(has_text=order_id)
    expect(row.locator(".needs-operator")).to_be_visible(timeout=10000)

    check_accessible(page, "the executions")

    say("STEP operator: finds the failed, compensating execution and its failed step")
    page.get_by_role("link", name=order_id).click()
    expect(page.locator("#execution-status")).to_have_text("FAILED", timeout=10000)
    expect(page.locator("#failed-step")).to_contain_text("Release stock")
    # Which service and method, each attempt with its time and answer.
    expect(page.locator("#failed-step")).to_contain_text("ferrymesh.inventory.v1.InventoryService/ReleaseReservation")
    attempts = page.get_by_role("region", name="Attempts at Release stock")
    expect(attempts).to_contain_text("FAILED_PRECONDITION")
    # The order as it stands (the saga stopped before failing it), and what to do.
    expect(page.locator("#order-status")).to_have_text("PENDING")
    expect(page.locator("#advice")).to_contain_text("then Redrive")
    expect(page.locator("#needs-operator")).to_contain_text("Release stock")
    expect(page).to_have_title(f"Execution {order_id} · Executions · Operations · ferrymesh console")
    check_accessible(page, "a failed execution")
    expect(page.locator('[data-step="Charge card"]')).to_have_attribute("data-progress", "caught")
    expect(page.locator('[data-step="Release stock"]')).to_have_attribute("data-progress", "failed")
    graph = page.locator("#execution-graph svg").inner_html()
    assert RED in graph, "the failed step is not drawn red"
    expect(page.locator('.timeline [data-type="TaskFailed"]').first).to_be_visible()
    if shots:
        page.locator("#execution-graph").scroll_into_view_if_needed()
        page.screenshot(path=f"{shots}/execution.png", full_page=False)

    say("STEP operator: follows the execution's logs")
    execution_url = page.url
    page.locator("#logs-link").click()
    expect(page.locator("#logs")).to_contain_text("task failed", timeout=15000)
    expect(page.locator("#logs")).to_contain_text("ReleaseReservation")
    page.goto(execution_url)
    expect(page.locator("#execution-status")).to_have_text("FAILED", timeout=10000)

    say("STEP operator: removes the fault and redrives")
    ask("remove-fault")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Redrive").click()
    expect(page.locator('[data-step="Release stock"]')).to_have_attribute("data-progress", "compensation", timeout=20000)
    expect(page.locator('[data-step="Fail order"]')).to_have_attribute("data-progress", "compensation", timeout=20000)
    expect(page.locator('.timeline [data-type="ExecutionRedriven"]')).to_be_visible()
    expect(page.locator("#execution-status")).to_have_text("FAILED", timeout=20000)
    expect(page.get_by_text("redriven 1×")).to_be_visible()
    assert asked and 'runs again from "Release stock"' in asked[0], asked
    # Compensated to its planned Fail state, it needs no one now, and a
    # redrive could only fail again: none is offered.
    expect(page.locator("#needs-operator")).to_have_count(0, timeout=10000)
    expect(page.locator("#redrive")).to_have_count(0)
    expect(page.locator("#advice")).to_contain_text("failed as its definition planned")
    expect(page.locator("#order-status")).to_have_text("FAILED")
    # An ended execution's page is not redrawn under the operator: focus
    # and a selection stay.
    page.locator("#logs-link").focus()
    page.evaluate("""() => { const r = document.createRange(); r.selectNodeContents(document.querySelector('#advice'));
                             getSelection().removeAllRanges(); getSelection().addRange(r); }""")
    time.sleep(3.5)
    expect(page.locator("#logs-link")).to_be_focused()
    assert "planned" in page.evaluate("() => getSelection().toString()"), "the selection was wiped"
    # The order is settled for the developer too.
    expect(developer.locator("#order-status")).to_have_text("FAILED", timeout=20000)

    say("STEP operator: finds one order's execution among hundreds, in two actions")
    page.get_by_role("link", name="Executions", exact=True).click()
    expect(page.locator("#groups-h")).to_contain_text("executions stand", timeout=10000)
    total = int(page.locator("#groups-h").inner_text().split()[1])
    assert total >= 300, f"only {total} executions"
    # The ordinary outcomes apart from the one that needed repair.
    expect(page.locator("#groups")).to_contain_text("ReportEmpty")
    expect(page.locator("#groups")).to_contain_text("failed as planned")
    page.get_by_label("Execution or order id").fill(order_id)
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#execution-status")).to_have_text("FAILED", timeout=10000)
    assert order_id in page.url, page.url
    # Paging: a second page of the reports.
    page.goto(f"{base}/#/ops/executions?machine=hourly-report")
    first = page.locator("#executions tbody tr").first.inner_text(timeout=10000)
    page.locator("#next-page").click()
    expect(page.locator("#executions tbody tr").first).not_to_have_text(first, timeout=10000)

    say("STEP operator: sees the developer's usage rise")
    page.get_by_role("link", name="Usage & revenue").click()
    row = page.get_by_role("row").filter(has_text=email)
    expect(row).to_be_visible(timeout=10000)
    check_accessible(page, "usage and revenue")
    before = int(row.locator("td").nth(2).inner_text())
    developer.goto(f"{base}/#/portal")
    chart_before = int(developer.locator("#usage-total").get_attribute("data-total", timeout=10000))
    calls(base, key, 25)
    deadline = time.time() + 20
    while True:
        page.reload()
        row = page.get_by_role("row").filter(has_text=email)
        after = int(row.locator("td").nth(2).inner_text(timeout=10000))
        if after >= before + 25:
            break
        assert time.time() < deadline, f"the developer's calls went from {before} to {after}, not up by 25"
        page.wait_for_timeout(1000)
    # The chart redraws every 3 seconds; the gateway flushes usage every second.
    developer.wait_for_function(
        "n => Number(document.querySelector('#usage-total')?.dataset.total) >= n", arg=chart_before + 25, timeout=20000
    )
    say("STEP operator: follows a failed call's logs, a trace and the service map")
    status, _ = grpc_web(base, "ferrymesh.catalog.v1.CatalogService/GetProduct", {"product_id": "no-such-product"}, key)
    assert status == "5", status
    correlation = grpc_web.correlation_id
    page.goto(f"{base}/#/ops/logs")
    page.get_by_role("textbox", name="Correlation id").fill(correlation)
    page.get_by_role("button", name="Follow").click()
    expect(page.locator("#logs")).to_contain_text(correlation, timeout=15000)
    expect(page.locator("#logs")).to_contain_text("catalog |")
    check_accessible(page, "the logs")
    page.goto(f"{base}/#/ops/traces")
    page.get_by_role("textbox", name="Order id, trace id or correlation id").fill(order_id)
    page.get_by_role("button", name="Find").click()
    # The order's first request: through the gateway to orders, which prices
    # it, tokenizes the card and starts the saga.
    trace = page.locator("#trace .waterfall").filter(has_text="OrdersService/PlaceOrder").first
    expect(trace).to_contain_text("gateway", timeout=15000)
    expect(trace).to_contain_text("PaymentsService/TokenizeCard")
    expect(trace).to_contain_text("WorkflowService/StartExecution")
    check_accessible(page, "the traces")
    page.get_by_role("link", name="Service map").click()
    expect(page.get_by_role("img", name="Service map", exact=False)).to_be_visible(timeout=10000)
    expect(page.get_by_role("row").filter(has_text="workflow").filter(has_text="payments").first).to_be_visible()
    check_accessible(page, "the service map")

    admin = lambda p: p.add_init_script(f"sessionStorage.setItem('ferrymesh.admin', {json.dumps(token)})")
    for tab in ["mesh", "red", "map", "executions", f"executions/{order_id}", "usage"]:
        fits_phone(browser, f"{base}/#/ops/{tab}", f"the {tab} view", prepare=admin)
    check_idle(base, idle)
    context.close()
    dev.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--admin-token", required=True)
    parser.add_argument("--screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            key, email = newcomer(browser, args.base, args.screenshots)
            operator(browser, args.base, args.admin_token, key, email, args.screenshots)
            every_page = {"the home page", "the sign-up page", "the portal", "the API reference", "the mesh view",
                          "the RED metrics", "the executions", "a failed execution", "usage and revenue", "the logs",
                          "the traces", "the service map"}
            missed = every_page - check_accessible.pages
            assert not missed, f"no accessibility check on {missed}"
        finally:
            browser.close()
    say("PASSED")


if __name__ == "__main__":
    main()
