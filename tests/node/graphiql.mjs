// Drives the GraphiQL page in headless Chromium (Debian's, through playwright-core): the page
// loads with no request leaving the server, the Explorer plugin opens, the default tab's Feed
// query runs, the result is shown.
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
  const failed = [];
  page.on("response", (response) => response.status() >= 400 && failed.push(`${response.status()} ${response.url()}`));

  await page.goto(`${base}/graphiql`, { waitUntil: "networkidle" });
  await page.waitForSelector(".graphiql-query-editor .CodeMirror", { timeout: 20000 });
  const tab = await page.locator(".graphiql-query-editor .CodeMirror-code").innerText();
  const operations = [...tab.matchAll(/^(query|mutation|subscription) (\w+)/gm)].map((m) => `${m[1]} ${m[2]}`);

  // The Explorer plugin: its button in the sidebar opens a panel listing the root fields.
  await page.click('.graphiql-sidebar button[aria-label="Show GraphiQL Explorer"]');
  const explorer = page.locator(".graphiql-explorer-root");
  await explorer.filter({ hasText: "posts" }).waitFor({ timeout: 20000 });
  const explorerFields = await explorer.locator(".graphiql-explorer-field-view").count();

  // The default tab holds several operations: the run button asks which; run Feed.
  const answered = page.waitForResponse(
    (response) =>
      response.url() === `${base}/graphql` && JSON.parse(response.request().postData() ?? "{}").operationName === "Feed",
  );
  await page.click(".graphiql-execute-button");
  await page.locator(".graphiql-dropdown-item", { hasText: "Feed" }).click();
  const answer = await (await answered).json();
  const response = page.locator(".graphiql-response .CodeMirror-code");
  await response.filter({ hasText: "\"posts\"" }).waitFor({ timeout: 20000 });
  const shown = (await response.innerText()).replaceAll("\u00a0", " ");
  await page.screenshot({ path: screenshot });
  const seen = { title: await page.title(), failed, operations, explorerFields, answer, shown, elsewhere, consoleErrors };
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
