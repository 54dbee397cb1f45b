#!/usr/bin/env node
// A tiny static file server for the example (and the browser test): 127.0.0.1 only, the MIME
// types browsers insist on (application/wasm for streaming compilation, text/javascript for
// modules), Content-Length on every file (so download progress has a total), no caching, and
// cross-origin isolation (COOP same-origin + COEP require-corp: the page gets SharedArrayBuffer,
// so the package runs its threads build in the model's worker) unless --no-isolation.
//
//   node serve.mjs [--port 8080] [--no-isolation] [ROOT]      # ROOT defaults to this folder
//
// Also importable: `const { url, close } = await serve(root, { port: 0, isolated: true })`.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

export const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
};

/** The headers that make a page cross-origin isolated (every file is same-origin here). */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/**
 * Serves `root` on host:port (port 0 = any free port), cross-origin isolated when `isolated`.
 * `log(line)` sees one line per request. Resolves with { server, url, close }.
 */
export function serve(root, { port = 0, host = '127.0.0.1', log = null, isolated = true } = {}) {
  const base = path.resolve(root);
  const extra = isolated ? ISOLATION_HEADERS : {};
  const server = http.createServer((req, res) => {
    const done = (status, headers = {}, body = null) => {
      res.writeHead(status, { 'Cache-Control': 'no-store', ...extra, ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
      log?.(`${req.method} ${req.url} ${status}`);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return done(405, { Allow: 'GET, HEAD' });
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      return done(400);
    }
    let file = path.join(base, rel);
    if (file !== base && !file.startsWith(base + path.sep)) return done(403);
    fs.stat(file, (err, st) => {
      if (!err && st.isDirectory()) {
        if (!rel.endsWith('/')) return done(301, { Location: rel + '/' });
        file = path.join(file, 'index.html');
        st = fs.existsSync(file) ? fs.statSync(file) : null;
      }
      if (err || !st || !st.isFile()) return done(404, { 'Content-Type': 'text/plain' }, 'not found\n');
      const type = MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': st.size, 'Cache-Control': 'no-store', ...extra });
      log?.(`${req.method} ${req.url} 200 ${st.size}`);
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).on('error', () => res.destroy()).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: p } = server.address();
      resolve({
        server,
        url: `http://${host}:${p}/`,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  let port = 8080;
  let isolated = true;
  let root = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = Number(args[++i]);
    else if (args[i] === '--no-isolation') isolated = false;
    else root = args[i];
  }
  const { url } = await serve(root, { port, isolated, log: (l) => console.log(l) });
  console.log(`serving ${root} at ${url}${isolated ? ' (cross-origin isolated)' : ''}`);
}
