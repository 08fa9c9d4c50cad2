// cdp_page.mjs - drives a real headless Chromium through its DevTools
// protocol (no npm package: Node's WebSocket where it has one, else the
// small RFC 6455 client below: Debian 12's Node 18 has none) for the web
// page tests.
//
//   node [--experimental-websocket] cdp_page.mjs CHROME STEPS.json
//
// STEPS.json is a list of steps run in order:
//   {"open": URL}                     navigate and wait for the load event
//   {"wait": EXPR, "timeout": MS}     until the page's EXPR is truthy
//   {"eval": EXPR, "as": NAME}        EXPR's value (JSON) into the result
//   {"click": SELECTOR}               click the element
//   {"screenshot": PATH}              a PNG of the whole page
//   {"touch": PATH}                   create PATH (tell the test we got here)
//   {"wait_file": PATH, "timeout": MS}  until the test creates PATH
// It prints one JSON object: {"ok", "values": {NAME: value}, "errors":
// [console errors, uncaught exceptions, failed loads], "failed": why}.
// Exit status 0 when every step ran (errors are for the test to judge).
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

// The part of the WebSocket API used here (onopen, onerror, onmessage with
// text data, send), over node:http's upgrade: client frames masked, server
// frames read whole (continuations joined), pings answered.
class MiniWebSocket {
  constructor(url) {
    const key = crypto.randomBytes(16).toString("base64");
    const req = http.request(url.replace(/^ws:/, "http:"), { headers: {
      Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": key } });
    req.on("upgrade", (res, socket, head) => {
      this.socket = socket;
      this.buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
      this.parts = [];
      socket.on("data", (d) => { this.buf = Buffer.concat([this.buf, d]); this.read(); });
      socket.on("error", () => this.onerror && this.onerror(new Error("websocket")));
      if (this.onopen) this.onopen();
      this.read();
    });
    req.on("error", (e) => this.onerror && this.onerror(e));
    req.end();
  }
  read() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0, op = b[0] & 0x0f;
      let len = b[1] & 0x7f, at = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); at = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); at = 10; }
      if (b.length < at + len) return;
      const payload = b.subarray(at, at + len);
      this.buf = b.subarray(at + len);
      if (op === 9) { this.frame(10, payload); continue; }
      if (op === 8 || op === 10) continue;
      this.parts.push(Buffer.from(payload));
      if (fin) {
        const data = Buffer.concat(this.parts).toString("utf8");
        this.parts = [];
        if (this.onmessage) this.onmessage({ data });
      }
    }
  }
  frame(op, payload) {
    const mask = crypto.randomBytes(4), n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | op, 0x80 | n]) :
      n < 65536 ? Buffer.from([0x80 | op, 0x80 | 126, n >> 8, n & 255]) :
      Buffer.concat([Buffer.from([0x80 | op, 0x80 | 127]),
        (() => { const x = Buffer.alloc(8); x.writeBigUInt64BE(BigInt(n)); return x; })()]);
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3];
    this.socket.write(Buffer.concat([head, mask, body]));
  }
  send(text) { this.frame(1, Buffer.from(text, "utf8")); }
}
const WS = globalThis.WebSocket && !process.env.CDP_MINI_WEBSOCKET ? globalThis.WebSocket :
  MiniWebSocket;

const [chrome, stepsFile] = process.argv.slice(2);
const steps = JSON.parse(fs.readFileSync(stepsFile, "utf8"));
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "troop-cdp-"));
const proc = spawn(chrome, ["--headless", "--no-sandbox", "--disable-gpu",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
  "--window-size=1280,1000", "--user-data-dir=" + profile, "about:blank"],
  { stdio: ["ignore", "ignore", "pipe"] });
proc.stderr.on("data", () => {});
const result = { ok: false, values: {}, errors: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function finish(code) {
  try { proc.kill("SIGKILL"); } catch (_) {}
  try { fs.rmSync(profile, { recursive: true, force: true }); } catch (_) {}
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(code);
}
setTimeout(() => { result.failed = "the whole run took over 120 s"; finish(1); }, 120000);

async function devtoolsPort() {
  const f = path.join(profile, "DevToolsActivePort");
  for (let i = 0; i < 300; i++) {
    try {
      const port = fs.readFileSync(f, "utf8").split("\n")[0].trim();
      if (port) return port;
    } catch (_) {}
    await sleep(50);
  }
  throw new Error("Chromium did not open its DevTools port");
}

let ws, nextId = 1;
const pending = new Map(), listeners = [];
function send(method, params = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
}
function onEvent(fn) { listeners.push(fn); }

async function evaluate(expr) {
  const r = await send("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error("evaluating " + expr + ": " +
    (r.exceptionDetails.exception && r.exceptionDetails.exception.description || r.exceptionDetails.text));
  return r.result.value;
}

async function main() {
  const port = await devtoolsPort();
  let page;
  for (let i = 0; i < 100 && !page; i++) {
    const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    page = list.find((t) => t.type === "page");
    if (!page) await sleep(50);
  }
  if (!page) throw new Error("no page target");
  ws = new WS(page.webSocketDebuggerUrl);
  await new Promise((res, rej) => { ws.onopen = res; ws.onerror = () => rej(new Error("websocket")); });
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && pending.has(msg.id)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(p.method + ": " + msg.error.message));
      else p.resolve(msg.result);
    } else if (msg.method) {
      for (const fn of listeners) fn(msg);
    }
  };
  onEvent((m) => {
    if (m.method === "Runtime.consoleAPICalled" && (m.params.type === "error" || m.params.type === "assert"))
      result.errors.push("console." + m.params.type + ": " +
        m.params.args.map((a) => a.value !== undefined ? a.value : a.description).join(" "));
    else if (m.method === "Runtime.exceptionThrown")
      result.errors.push("uncaught: " + (m.params.exceptionDetails.exception &&
        m.params.exceptionDetails.exception.description || m.params.exceptionDetails.text));
    else if (m.method === "Log.entryAdded" && m.params.entry.level === "error")
      result.errors.push("log: " + m.params.entry.text + (m.params.entry.url ? " (" + m.params.entry.url + ")" : ""));
  });
  await send("Runtime.enable");
  await send("Log.enable");
  await send("Page.enable");
  for (const s of steps) {
    if (s.open) {
      const loaded = new Promise((res) => onEvent((m) => { if (m.method === "Page.loadEventFired") res(); }));
      const r = await send("Page.navigate", { url: s.open });
      if (r.errorText) throw new Error("open " + s.open + ": " + r.errorText);
      await loaded;
    } else if (s.wait) {
      const end = Date.now() + (s.timeout || 10000);
      let v;
      while (!(v = await evaluate(s.wait).catch(() => false))) {
        if (Date.now() > end) throw new Error("timed out waiting for: " + s.wait);
        await sleep(50);
      }
    } else if (s.eval) {
      result.values[s.as || s.eval] = await evaluate(s.eval);
    } else if (s.click) {
      await evaluate(`document.querySelector(${JSON.stringify(s.click)}).click(), true`);
    } else if (s.screenshot) {
      const r = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
      fs.mkdirSync(path.dirname(s.screenshot), { recursive: true });
      fs.writeFileSync(s.screenshot, Buffer.from(r.data, "base64"));
    } else if (s.touch) {
      fs.writeFileSync(s.touch, "");
    } else if (s.wait_file) {
      const end = Date.now() + (s.timeout || 30000);
      while (!fs.existsSync(s.wait_file)) {
        if (Date.now() > end) throw new Error("timed out waiting for file " + s.wait_file);
        await sleep(50);
      }
    } else {
      throw new Error("unknown step " + JSON.stringify(s));
    }
  }
  result.ok = true;
}

main().then(() => finish(0), (e) => { result.failed = String(e.message || e); finish(1); });
