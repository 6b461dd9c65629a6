// Plays a live LL-HLS stream with hls.js (lowLatencyMode) in headless Debian Chromium and
// prints ONE JSON line saying what the browser saw: whether it played, how far the media
// clock moved, decoded video frames and audio bytes, hls.js's live latency, errors, stalls
// and the LL-HLS parts it loaded.
//
//   node play.mjs <master.m3u8 URL> [--seconds 15] [--startup-timeout 20]
//                 [--chromium /usr/bin/chromium] [--screenshot out.png] [--diag]
//                 [--switch-every N] [--start-position S]
//
// --switch-every N asks hls.js for the next quality level (hls.nextLevel, the way its ABR
// switches: at the next fragment, no buffer flush) every N seconds of playback, cycling
// through the master playlist's variants; the JSON then lists the switches hls.js made and
// every picture size the video element showed.
// --start-position S starts playback S seconds into the playlist (hls.js startPosition),
// as a player of a start-over (EXT-X-PLAYLIST-TYPE EVENT) stream starting from its
// beginning does; by default hls.js starts a live or EVENT playlist at its live edge.
// --diag adds "diag" to the JSON: initPTS, every fragment or part hls.js buffered (playlist
// start and media PTS per stream) and each SourceBuffer's ranges at every stall.
//
// Exit status: 0 it played; 1 hls.js hit a fatal error or nothing played (the JSON says
// which); 2 bad arguments or the browser could not start. The page and hls.js are served
// from 127.0.0.1 by this script: no CDN, the check runs offline.
//
// Runs on Node >= 18 (Debian 12's nodejs) with playwright-core driving the system
// Chromium; playwright's own browser downloads are never used.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

function usage(message) {
  process.stderr.write(`play.mjs: ${message}\n` +
    'usage: node play.mjs <master.m3u8 URL> [--seconds N] [--startup-timeout N] ' +
    '[--chromium PATH] [--screenshot FILE] [--diag] [--switch-every N] [--start-position S]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { seconds: 15, startupTimeout: 20, chromium: '/usr/bin/chromium', screenshot: null, diag: false, switchEvery: null, startPosition: null, src: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    const number = () => {
      const n = Number(value());
      if (!Number.isFinite(n) || n <= 0) usage(`${arg} needs a positive number`);
      return n;
    };
    if (arg === '--seconds') opts.seconds = number();
    else if (arg === '--startup-timeout') opts.startupTimeout = number();
    else if (arg === '--chromium') opts.chromium = value();
    else if (arg === '--screenshot') opts.screenshot = value();
    else if (arg === '--diag') opts.diag = true;
    else if (arg === '--switch-every') opts.switchEvery = number();
    else if (arg === '--start-position') {
      const n = Number(value());
      if (!Number.isFinite(n) || n < 0) usage(`${arg} needs a number of seconds, 0 or more`);
      opts.startPosition = n;
    }
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else if (opts.src === null) opts.src = arg;
    else usage(`unexpected argument ${arg}`);
  }
  if (opts.src === null) usage('the master playlist URL is required');
  return opts;
}

// Serves exactly the page and hls.js; anything else is 404.
async function startStaticServer() {
  const files = new Map([
    ['/', { body: await readFile(join(here, 'index.html')), type: 'text/html; charset=utf-8' }],
    ['/hls.min.js', { body: await readFile(join(here, 'node_modules/hls.js/dist/hls.min.js')), type: 'text/javascript' }],
  ]);
  const server = createServer((req, res) => {
    const file = files.get(new URL(req.url, 'http://localhost').pathname);
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-store' }).end(file.body);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return round(sorted[i]);
}

function stats(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  return { samples: v.length, min: quantile(v, 0), p50: quantile(v, 0.5), p95: quantile(v, 0.95), max: quantile(v, 1) };
}

const round = (x) => (typeof x === 'number' ? Math.round(x * 1000) / 1000 : x);

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const server = await startStaticServer();
  const pageUrl = `http://127.0.0.1:${server.address().port}/?src=${encodeURIComponent(opts.src)}${opts.diag ? '&diag=1' : ''}${opts.startPosition === null ? '' : `&startPosition=${opts.startPosition}`}`;

  let browser;
  try {
    // launch() gives every run a fresh temporary profile and removes it afterwards.
    browser = await chromium.launch({
      executablePath: opts.chromium,
      headless: true,
      timeout: 60_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--autoplay-policy=no-user-gesture-required',
      ],
    });
  } catch (e) {
    server.close();
    process.stderr.write(`play.mjs: could not start Chromium at ${opts.chromium} ` +
      `(scripts/install-deps.sh installs it): ${e.message}\n`);
    process.exit(2);
  }

  const consoleLines = [];
  const pageErrors = [];
  const failedRequests = [];
  let report;
  try {
    const page = await browser.newPage({ viewport: { width: 640, height: 360 } });
    page.on('console', (msg) => {
      if ((msg.type() === 'warning' || msg.type() === 'error') && consoleLines.length < 50) {
        const where = msg.location()?.url;
        consoleLines.push(`${msg.type()}: ${msg.text()}${where ? ` (${where})` : ''}`);
      }
    });
    page.on('pageerror', (e) => { if (pageErrors.length < 20) pageErrors.push(String(e)); });
    page.on('requestfailed', (r) => {
      if (failedRequests.length < 20) failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400 && failedRequests.length < 20) failedRequests.push(`${r.url()}: HTTP ${r.status()}`);
    });

    await page.goto(pageUrl, { waitUntil: 'load', timeout: 30_000 });

    // Wait for the first 'playing' (or a fatal error), then sample for --seconds.
    const startupDeadline = Date.now() + opts.startupTimeout * 1000;
    let state = null;
    while (Date.now() < startupDeadline) {
      state = await page.evaluate(() => ({ playing: window.__check.firstPlayingAt !== null, fatal: window.__check.fatal }));
      if (state.playing || state.fatal) break;
      await sleep(100);
    }
    if (state && state.playing && !state.fatal) {
      const until = Date.now() + opts.seconds * 1000;
      let nextSwitch = opts.switchEvery === null ? Infinity : Date.now() + opts.switchEvery * 1000;
      while (Date.now() < until) {
        const fatal = await page.evaluate(() => window.__check.fatal);
        if (fatal) break;
        if (Date.now() >= nextSwitch) {
          nextSwitch += opts.switchEvery * 1000;
          await page.evaluate(() => {
            const hls = window.__hls;
            if (hls.levels.length > 1) hls.nextLevel = (Math.max(hls.currentLevel, 0) + 1) % hls.levels.length;
          });
        }
        await sleep(Math.min(500, Math.max(0, Math.min(until, nextSwitch) - Date.now())));
      }
    }
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot });

    const seen = await page.evaluate(() => {
      const v = document.getElementById('video');
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
      const hls = window.__hls;
      return {
        check: window.__check,
        now: performance.now(),
        video: {
          currentTime: v.currentTime,
          paused: v.paused,
          width: v.videoWidth,
          height: v.videoHeight,
          totalFrames: q ? q.totalVideoFrames : null,
          droppedFrames: q ? q.droppedVideoFrames : null,
          // Chromium's counters of bytes its decoders consumed: proof audio was decoded,
          // not only downloaded.
          videoDecodedBytes: typeof v.webkitVideoDecodedByteCount === 'number' ? v.webkitVideoDecodedByteCount : null,
          audioDecodedBytes: typeof v.webkitAudioDecodedByteCount === 'number' ? v.webkitAudioDecodedByteCount : null,
        },
        hls: hls ? {
          latency: hls.latency,
          targetLatency: hls.targetLatency,
          audioTracks: hls.audioTracks ? hls.audioTracks.length : 0,
          lowLatencyMode: hls.lowLatencyMode,
        } : null,
      };
    });
    report = summarize(seen, browser.version(), opts);
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
  report.console = consoleLines;
  report.page_errors = pageErrors;
  report.failed_requests = failedRequests;
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(report.ok ? 0 : 1);
}

function summarize(seen, browserVersion, opts) {
  const c = seen.check;
  const samples = c.samples;
  const firstPlaying = c.firstPlayingAt;
  const startTime = samples.length ? samples[0].currentTime : null;
  const advanced = startTime === null ? 0 : seen.video.currentTime - startTime;
  const waiting = c.waiting;
  // Still moving at the end: the media clock advanced over the last 2 s sampled (less for
  // short runs). A player stuck in a stall is not paused, but it is not playing either.
  const tailMs = Math.min(2000, opts.seconds * 500);
  const tail = samples.filter((s) => s.at <= seen.now - tailMs).pop();
  const movingAtEnd = tail !== undefined && seen.video.currentTime - tail.currentTime > tailMs / 4000;
  const playing = firstPlaying !== null && !seen.video.paused && movingAtEnd;
  const report = {
    ok: false,
    failure: null,
    playing,
    startup_ms: firstPlaying !== null && c.loadStartedAt !== null ? Math.round(firstPlaying - c.loadStartedAt) : null,
    first_frame_ms: c.firstFrameAt !== null && c.loadStartedAt !== null ? Math.round(c.firstFrameAt - c.loadStartedAt) : null,
    sampled_s: firstPlaying !== null ? round((seen.now - firstPlaying) / 1000) : 0,
    current_time_advanced_s: round(advanced),
    video: {
      width: seen.video.width,
      height: seen.video.height,
      total_frames: seen.video.totalFrames,
      dropped_frames: seen.video.droppedFrames,
      decoded_bytes: seen.video.videoDecodedBytes,
      codec: c.bufferCodecs.video || c.bufferCodecs.audiovideo || null,
    },
    audio: {
      tracks: seen.hls ? seen.hls.audioTracks : 0,
      codec: c.bufferCodecs.audio || null,
      source_buffer: c.sourceBuffers.includes('audio') || c.sourceBuffers.includes('audiovideo'),
      decoded_bytes: seen.video.audioDecodedBytes,
    },
    latency_s: stats(samples.map((s) => s.latency)),
    pdt_latency_s: stats(samples.map((s) => s.pdtLatency)),
    buffer_ahead_s: stats(samples.map((s) => s.bufferAhead)),
    target_latency_s: round(seen.hls ? seen.hls.targetLatency : null),
    final_latency_s: round(seen.hls ? seen.hls.latency : null),
    playback_rate_max: samples.length ? Math.max(...samples.map((s) => s.playbackRate)) : null,
    levels: c.manifest ? c.manifest.levels : [],
    audio_tracks: c.manifest ? c.manifest.audioTracks : [],
    source_buffers: c.sourceBuffers,
    parts_loaded: c.partsLoaded,
    parts_loaded_by_type: c.partsLoadedByType,
    segments_loaded: c.segmentsLoaded,
    level_reloads: c.levelReloads,
    level_switches: c.levelSwitches.map((s) => ({ at_s: firstPlaying !== null ? round((s.at - firstPlaying) / 1000) : null, level: s.level })),
    sizes_seen: c.sizes.map((s) => ({ width: s.width, height: s.height, current_time_s: round(s.currentTime) })),
    stalls: waiting.length,
    stall_times_s: waiting.map((w) => round((w.at - firstPlaying) / 1000)),
    fatal_error: c.fatal,
    errors: Object.entries(c.errors).map(([key, e]) => ({ error: key, count: e.count, reason: e.reason, url: e.url })),
    media_errors: c.mediaErrors,
    hls_warnings: c.hlsWarnings,
    hls_version: c.hlsVersion,
    browser: browserVersion,
    seconds_requested: opts.seconds,
  };
  if (c.diag) report.diag = { ...c.diag, log: c.diagLog };
  if (c.fatal) report.failure = `hls.js fatal error: ${c.fatal.type}/${c.fatal.details}`;
  else if (firstPlaying === null) report.failure = `no 'playing' event within ${opts.startupTimeout} s`;
  else if (!playing) report.failure = `playback stopped: media clock at ${round(seen.video.currentTime)} s did not move in the last ${tailMs / 1000} s`;
  report.ok = report.failure === null;
  return report;
}

main().catch((e) => {
  process.stderr.write(`play.mjs: ${e.stack || e}\n`);
  process.exit(2);
});
