"""The console's browser tests: Debian's Chromium, headless, driven by Playwright.

Run by tests/console.rs, which starts the mesh (with a fault it can remove)
and answers this script's requests on stdin/stdout:

  python console.py --base http://127.0.0.1:PORT --admin-token TOKEN [--screenshots DIR]

Each step checks what the page shows, not only that it loaded. A failed
step raises, and the script exits non-zero naming it.
"""

import argparse
import json
import struct
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

DECLINED = "4000 0000 0000 0002"
GREEN = "#dcfce7"  # the workflow's fill for a state that succeeded
RED = "#fee2e2"  # ... and for one that failed
IN_PROGRESS = "#dbeafe"


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
    page.get_by_role("link", name="Developer portal").first.click()
    expect(page.get_by_role("heading", name="Developer portal")).to_be_visible()
    check_accessible(page, "the sign-up page")
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

    say("STEP newcomer: calls GetProduct through try it")
    page.goto(f"{base}/#/reference/ferrymesh.catalog.v1.CatalogService")
    section = page.locator("section", has=page.get_by_role("heading", name="GetProduct", exact=False)).first
    expect(section).to_contain_text("GetProductRequest")
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
    key = new_key

    fits_phone(browser, f"{base}/#/portal", "the portal",
               prepare=lambda p: p.add_init_script(f"sessionStorage.setItem('ferrymesh.key', {json.dumps(key)})"))
    context.close()
    say(f"KEY {key}")
    say(f"ORDER {order_id}")
    return key, email


def operator(browser, base, token, key, email, shots):
    say("STEP operator: a developer's order is declined, and its compensation fails")
    dev = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    dev.add_init_script(f"sessionStorage.setItem('ferrymesh.key', {json.dumps(key)})")
    developer = dev.new_page()
    developer.goto(f"{base}/#/portal")
    form = developer.locator("#order-h").locator("..")
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
        page.screenshot(path=f"{shots}/red.png", full_page=False)

    say("STEP operator: the mesh page says an execution needs an operator, and which")
    page.get_by_role("link", name="Mesh", exact=True).click()
    expect(page.locator("#attention")).to_contain_text("needs an operator", timeout=15000)
    # This mesh runs no periodic audit; the card says how to start one.
    expect(page.locator("#audit")).to_contain_text("ferrymesh up --audit-every 1m")
    page.get_by_role("link", name="see which, and why").click()
    expect(page.get_by_label("Needs an operator")).to_be_checked()
    row = page.get_by_role("row").filter(has_text=order_id)
    expect(row.locator(".needs-operator")).to_be_visible(timeout=10000)

    say("STEP operator: finds the failed, compensating execution and its failed step")
    page.get_by_role("link", name=order_id).click()
    expect(page.locator("#execution-status")).to_have_text("FAILED", timeout=10000)
    expect(page.locator("#failed-step")).to_contain_text("Release stock")
    expect(page.locator("#needs-operator")).to_contain_text("Release stock")
    expect(page.locator('[data-step="Charge card"]')).to_have_attribute("data-progress", "caught")
    expect(page.locator('[data-step="Release stock"]')).to_have_attribute("data-progress", "failed")
    graph = page.locator("#execution-graph svg").inner_html()
    assert RED in graph, "the failed step is not drawn red"
    expect(page.locator('.timeline [data-type="TaskFailed"]').first).to_be_visible()
    if shots:
        page.locator("#execution-graph").scroll_into_view_if_needed()
        page.screenshot(path=f"{shots}/execution.png", full_page=False)

    say("STEP operator: removes the fault and redrives")
    ask("remove-fault")
    page.get_by_role("button", name="Redrive").click()
    expect(page.locator('[data-step="Release stock"]')).to_have_attribute("data-progress", "compensation", timeout=20000)
    expect(page.locator('[data-step="Fail order"]')).to_have_attribute("data-progress", "compensation", timeout=20000)
    expect(page.locator('.timeline [data-type="ExecutionRedriven"]')).to_be_visible()
    expect(page.locator("#execution-status")).to_have_text("FAILED", timeout=20000)
    expect(page.get_by_text("redriven 1×")).to_be_visible()
    # Compensated to its planned Fail state, it needs no one now.
    expect(page.locator("#needs-operator")).to_have_count(0, timeout=10000)
    # An ended execution's page is not redrawn under the operator: focus stays.
    page.locator("#redrive").focus()
    time.sleep(3.5)
    expect(page.locator("#redrive")).to_be_focused()
    # The order is settled for the developer too.
    expect(developer.locator("#order-status")).to_have_text("FAILED", timeout=20000)

    say("STEP operator: sees the developer's usage rise")
    page.get_by_role("link", name="Usage & revenue").click()
    row = page.get_by_role("row").filter(has_text=email)
    expect(row).to_be_visible(timeout=10000)
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
    page.goto(f"{base}/#/ops/traces")
    page.get_by_role("textbox", name="Order id, trace id or correlation id").fill(order_id)
    page.get_by_role("button", name="Find").click()
    # The order's first request: through the gateway to orders, which prices
    # it, tokenizes the card and starts the saga.
    trace = page.locator("#trace .waterfall").filter(has_text="OrdersService/PlaceOrder").first
    expect(trace).to_contain_text("gateway", timeout=15000)
    expect(trace).to_contain_text("PaymentsService/TokenizeCard")
    expect(trace).to_contain_text("WorkflowService/StartExecution")
    page.get_by_role("link", name="Service map").click()
    expect(page.get_by_role("img", name="Service map", exact=False)).to_be_visible(timeout=10000)
    expect(page.get_by_role("row").filter(has_text="workflow").filter(has_text="payments").first).to_be_visible()

    fits_phone(browser, f"{base}/#/ops/mesh", "the mesh view",
               prepare=lambda p: p.add_init_script(f"sessionStorage.setItem('ferrymesh.admin', {json.dumps(token)})"))
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
        finally:
            browser.close()
    say("PASSED")


if __name__ == "__main__":
    main()
