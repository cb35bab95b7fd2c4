// Drives the GraphiQL page in headless Chromium (Debian's, through playwright-core): the page
// loads with no request leaving the server, the default query runs, the result is shown.
// Usage: node graphiql.mjs <base url> <screenshot path>. Prints JSON with what it saw.
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const elsewhere = [];
  const consoleErrors = [];
  page.on("request", (request) => {
    if (!request.url().startsWith(base) && !request.url().startsWith("data:")) elsewhere.push(request.url());
  });
  page.on("console", (message) => message.type() === "error" && consoleErrors.push(message.text()));

  await page.goto(`${base}/graphiql`, { waitUntil: "networkidle" });
  await page.waitForSelector(".graphiql-query-editor .CodeMirror", { timeout: 20000 });
  const answered = page.waitForResponse(
    (response) => response.url() === `${base}/graphql` && response.request().postData()?.includes("query Feed"),
  );
  await page.click(".graphiql-execute-button");
  const answer = await (await answered).json();
  const response = page.locator(".graphiql-response .CodeMirror-code");
  await response.filter({ hasText: "\"posts\"" }).waitFor({ timeout: 20000 });
  const shown = (await response.innerText()).replaceAll("\u00a0", " ");
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ title: await page.title(), answer, shown, elsewhere, consoleErrors }));
} finally {
  await browser.close();
}
