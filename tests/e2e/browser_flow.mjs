// Drives Debian's headless Chromium through the connections flow with playwright-core:
// open /connections, click Connect (gmail), click Allow on the sandbox's Connect Link page,
// land on toolgate's /callback (which names what is still pending), go back and see
// Connected, take a screenshot of the page and one of the Gmail logo as rendered.
//
// Usage: node browser_flow.mjs <playwright-core dir> <connections URL> <screenshot path> <profile dir> <logo screenshot path>
// Prints one JSON line with what it saw; exits non-zero on any failure.

const [, , playwrightDir, connectionsUrl, screenshotPath, profileDir, logoPath] = process.argv;
const { chromium } = await import(`${playwrightDir}/index.mjs`);

const context = await chromium.launchPersistentContext(profileDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1000, height: 700 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Chromium refuses some ports outright (ERR_UNSAFE_PORT); the test's ports are random.
    ...(process.env.ALLOWED_PORTS ? [`--explicitly-allowed-ports=${process.env.ALLOWED_PORTS}`] : []),
  ],
});
const seen = { urls: [] };
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  await page.goto(connectionsUrl);
  seen.urls.push(page.url());
  seen.initialStatus = await page.getAttribute("#toolkit-gmail .badge", "data-status");
  // The logo image loaded and decoded (a broken or blocked image has naturalWidth 0).
  seen.logo = await page.$eval("#toolkit-gmail .logo img", (img) => ({
    complete: img.complete,
    naturalWidth: img.naturalWidth,
    src: img.getAttribute("src"),
  }));
  await page.locator("#toolkit-gmail .logo").screenshot({ path: logoPath });

  await page.click("#connect-gmail");
  await page.waitForURL((url) => url.pathname.includes("/link/ln_"));
  seen.urls.push(page.url());
  seen.linkPageMentionsGmail = (await page.content()).toLowerCase().includes("gmail");

  await page.getByRole("button", { name: /allow/i }).click();
  await page.waitForURL((url) => url.pathname === "/callback");
  seen.urls.push(page.url());
  seen.callbackTitle = (await page.textContent("#callback-title"))?.trim();
  seen.callbackText = (await page.textContent("#callback"))?.trim();
  seen.stillPending = await page.$$eval("ul.pending li", (items) => items.map((li) => li.dataset.toolkit));

  await page.click("#back");
  await page.waitForURL((url) => url.pathname === "/connections");
  seen.urls.push(page.url());
  seen.finalStatus = await page.getAttribute("#toolkit-gmail .badge", "data-status");
  seen.finalBadge = (await page.textContent("#toolkit-gmail .badge"))?.trim();
  await page.screenshot({ path: screenshotPath, fullPage: true });
  console.log(JSON.stringify(seen));
} finally {
  await context.close();
}
