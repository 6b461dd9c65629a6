// Publishes headless Chromium's fake camera and microphone to a WHIP endpoint through
// whip.html, keeps publishing for --seconds, then DELETEs the session and prints ONE JSON
// line with what the browser did: the POST's status, when it connected, and per track the
// codec it sent and its counters (frames, keyframes, PLIs received). Before that, when the
// server answers 201, it prints {"event":"published","posted_at_ms":…} so a caller can time
// publish-to-first-part from the request.
//
//   FLOODLIGHT_WHIP_TOKEN=<stream key> node whip.mjs <WHIP endpoint URL> [--seconds 20]
//                 [--chromium /usr/bin/chromium]
//
// The stream key comes from the environment, never the command line (process lists and
// logs show arguments). Exit status: 0 published and connected and sent media; 1 refused,
// not connected, or nothing sent (the JSON's `failure` says which); 2 bad arguments or the
// browser could not start. Runs on Node >= 18 with playwright-core driving the system
// Chromium, like play.mjs.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

function usage(message) {
  process.stderr.write(`whip.mjs: ${message}\n` +
    'usage: FLOODLIGHT_WHIP_TOKEN=<stream key> node whip.mjs <WHIP endpoint URL> [--seconds N] [--chromium PATH]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { seconds: 20, chromium: '/usr/bin/chromium', endpoint: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--seconds') {
      opts.seconds = Number(value());
      if (!Number.isFinite(opts.seconds) || opts.seconds <= 0) usage('--seconds needs a positive number');
    } else if (arg === '--chromium') opts.chromium = value();
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else if (opts.endpoint === null) opts.endpoint = arg;
    else usage(`unexpected argument ${arg}`);
  }
  if (opts.endpoint === null) usage('the WHIP endpoint URL is required');
  opts.token = process.env.FLOODLIGHT_WHIP_TOKEN;
  if (!opts.token) usage('FLOODLIGHT_WHIP_TOKEN (the stream key) is not set');
  return opts;
}

// Serves exactly the page; anything else is 404.
async function startStaticServer() {
  const page = await readFile(join(here, 'whip.html'));
  const server = createServer((req, res) => {
    if (new URL(req.url, 'http://localhost').pathname !== '/') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const server = await startStaticServer();
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: opts.chromium,
      headless: true,
      timeout: 60_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // A fake camera (test pattern) and microphone (beeps), granted without a prompt.
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
        // The test server listens on 127.0.0.1; WebRTC skips loopback without this.
        '--allow-loopback-in-peer-connection',
      ],
    });
  } catch (e) {
    server.close();
    process.stderr.write(`whip.mjs: could not start Chromium at ${opts.chromium}: ${e.message}\n`);
    process.exit(2);
  }

  const consoleLines = [];
  const report = { ok: false, failure: null, browser: browser.version() };
  try {
    const page = await browser.newPage();
    page.on('console', (msg) => {
      if ((msg.type() === 'warning' || msg.type() === 'error') && consoleLines.length < 30) {
        consoleLines.push(`${msg.type()}: ${msg.text()}`);
      }
    });
    page.on('pageerror', (e) => { if (consoleLines.length < 30) consoleLines.push(`pageerror: ${e}`); });
    await page.goto(`http://127.0.0.1:${server.address().port}/`, { waitUntil: 'load', timeout: 30_000 });
    const published = await page.evaluate(
      ({ endpoint, token }) => window.whip.publish(endpoint, token),
      { endpoint: opts.endpoint, token: opts.token },
    );
    report.post_status = published.status;
    report.post_error = published.error ?? null;
    report.posted_at_ms = published.postedAt;
    if (published.status !== 201) {
      report.failure = `WHIP POST answered ${published.status}`;
    } else {
      process.stdout.write(JSON.stringify({ event: 'published', posted_at_ms: published.postedAt }) + '\n');
      const until = Date.now() + opts.seconds * 1000;
      while (Date.now() < until) {
        const state = await page.evaluate(() => window.whip.pc.connectionState);
        if (state === 'failed' || state === 'closed') break;
        await sleep(500);
      }
      const stats = await page.evaluate(() => window.whip.stats());
      report.connection_state = stats.connection_state;
      report.connected_ms = stats.connected_at !== null ? stats.connected_at - published.postedAt : null;
      report.outbound = stats.outbound;
      report.delete_status = await page.evaluate(() => window.whip.unpublish());
      const sent = (kind) => (stats.outbound[kind]?.packets_sent ?? 0) > 0;
      if (stats.connected_at === null) report.failure = `never connected (state ${stats.connection_state})`;
      else if (!sent('video') || !sent('audio')) report.failure = 'no video or no audio was sent';
    }
  } catch (e) {
    report.failure = `error: ${e.message}`;
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
  report.console = consoleLines;
  report.ok = report.failure === null;
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(report.ok ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`whip.mjs: ${e.stack || e}\n`);
  process.exit(2);
});
