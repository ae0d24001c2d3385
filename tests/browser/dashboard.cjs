// The dashboard in a real browser: headless Debian chromium driven by playwright-core.
// Run by tests/api/dashboard.rs with BASE_URL, API_KEY, NUMBER, SCREENSHOT (and NODE_PATH
// pointing at playwright-core). Exits non-zero with a message on the first failed check.
"use strict";

const { chromium } = require("playwright-core");

const base = process.env.BASE_URL;
const key = process.env.API_KEY;
const number = process.env.NUMBER;
const screenshot = process.env.SCREENSHOT;
const recipients = Number(process.env.RECIPIENTS || "400");
const timeout = 60000; // a bound against hangs, not a timing assertion

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function api(path, options = {}) {
  const res = await fetch(base + path, {
    ...options,
    headers: { "X-API-Key": key, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = await res.json();
  return { status: res.status, body };
}

async function submit(phones) {
  const created = await api("/api/v1/meta-templates/send-bulk/", {
    method: "POST",
    body: JSON.stringify({
      phone_number_id: number,
      template_name: "welcome_message",
      language: "es",
      recipients: phones.map((phone) => ({ phone, variables: { customer_name: "Ana" } })),
    }),
  });
  check(created.status === 202, `send-bulk answered ${created.status}: ${JSON.stringify(created.body)}`);
  return created.body.bulk_send_id;
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const errors = [];
  try {
    // A phone-sized screen.
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    page.setDefaultTimeout(timeout);
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

    await page.goto(base + "/");
    // The key, typed once, through its label.
    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", { name: "Open" }).click();
    await page.locator("#number-list > li").nth(2).waitFor();
    const numbers = await page.locator("#number-list > li").count();
    check(numbers === 3, `3 sandbox numbers listed, got ${numbers}`);
    check(
      (await page.locator(`[data-number="${number}"] [role="meter"]`).count()) === 1,
      "the number has a quota gauge",
    );
    // A marker that a reload would lose.
    await page.evaluate(() => { window.__noReload = true; });

    // A send submitted through the API appears on the page by itself.
    const phones = Array.from({ length: recipients }, (_, i) => `+54911${String(40000000 + i).padStart(8, "0")}`);
    const id = await submit(phones);
    const card = page.locator(`[data-send="${id}"]`);
    await card.waitFor();

    // Open it with the keyboard, pause it from the page, check the API agrees, resume.
    await page.locator(`#send-title-${id}`).focus();
    await page.keyboard.press("Enter");
    await page.locator("#detail:not([hidden])").waitFor();
    await page.getByRole("button", { name: "Pause" }).click();
    await page.locator('#detail[data-paused="true"]').waitFor();
    const paused = await api(`/api/v1/meta-templates/bulk-sends/${id}/`);
    check(paused.body.paused === true, `the API says paused: ${JSON.stringify(paused.body)}`);
    check(paused.body.status !== "COMPLETED", "paused before it finished");
    check(await page.getByRole("button", { name: "Pause" }).isDisabled(), "Pause is disabled while paused");
    await page.getByRole("button", { name: "Resume" }).click();
    await page.locator('#detail[data-paused="false"]').waitFor();

    // It reaches COMPLETED with the right counts, in the list and in the detail.
    await page.locator(`[data-send="${id}"][data-status="COMPLETED"]`).waitFor();
    await page.locator('#detail[data-status="COMPLETED"]').waitFor();
    const count = (what) => card.locator(`[data-count="${what}"]`).textContent();
    const n = recipients.toLocaleString("en-US");
    check((await count("sent")) === `${n} sent`, `the card says ${await count("sent")}`);
    check((await count("failed")) === "0 failed", `the card says ${await count("failed")}`);
    check((await page.locator("#detail").getAttribute("data-sent")) === String(recipients), "the detail counts every message");
    const status = await api(`/api/v1/meta-templates/bulk-sends/${id}/`);
    check(status.body.status === "COMPLETED" && status.body.sent_count === recipients, `the API says ${JSON.stringify(status.body)}`);

    // A send with a recipient that is not on WhatsApp: Meta fails it by webhook (131026),
    // and its detail lists the failure with Meta's error. A third recipient is on the
    // tenant's suppression list: never sent, counted apart on the card.
    const listed = await api("/api/v1/suppressions/", {
      method: "POST",
      body: JSON.stringify({ phones: ["+5491150000001"], reason: "asked us to stop" }),
    });
    check(listed.status === 200, `suppressions answered ${listed.status}: ${JSON.stringify(listed.body)}`);
    const partial = await submit(["+5491150000000", "+14155550100", "+5491150000001"]);
    await page.locator(`#send-title-${partial}`).click();
    await page.locator(`#detail[data-status="PARTIAL"]`).waitFor();
    const failedRow = page.locator("#failed-rows tr").filter({ hasText: "+14155550100" });
    await failedRow.waitFor();
    const failedText = await failedRow.textContent();
    check(failedText.includes("131026"), `the failure shows Meta's code: ${failedText}`);
    check(
      (await page.locator(`[data-send="${partial}"] [data-count="failed"]`).textContent()) === "1 failed",
      "the card counts the failure",
    );
    check(
      (await page.locator(`[data-send="${partial}"] [data-count="suppressed"]`).textContent()) === "1 suppressed",
      "the card counts the suppressed recipient",
    );
    check((await card.locator('[data-count="suppressed"]').count()) === 0, "a send without suppressions shows none");
    check(await page.evaluate(() => window.__noReload === true), "the page was not reloaded");
    const points = await page.locator("#chart polyline").count();
    check(points === 4, `four funnel lines in the chart, got ${points}`);

    await page.screenshot({ path: screenshot, fullPage: true });
    check(errors.length === 0, `errors in the page: ${[...new Set(errors)].slice(0, 5).join("; ")}`);
    console.log(`dashboard: send ${id} followed to COMPLETED (${recipients} sent), paused and resumed from the page, a failure listed; screenshot ${screenshot}`);
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  console.error(`dashboard browser test failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
