#!/usr/bin/env node
// walrelay replica, wire format v1 / entry format v1: a second, independent implementation
// written from docs/protocol.md, docs/failover.md and docs/conformance.md only.
// Node.js >= 20, no npm dependencies. See README.md next to this file.
//
//   node replica.js replica --id ID --listen HOST:PORT --data DIR --placement DIR
//        (--ca FILE --cert FILE --key FILE | --insecure) [--bug NAME]
'use strict';

const net = require('node:net');
const tls = require('node:tls');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

// ---------------------------------------------------------------------------------------------
// Constants (protocol.md §1, §5.1, §5.2, §5.6)

const MAX_FRAME = 67109888; // 64 MiB + 1024, §5.1
const GENESIS = Buffer.alloc(16);
const OBJECT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const U64_MAX = (1n << 64n) - 1n;

const T = {
  HELLO: 0x01, APPEND: 0x10, ACK: 0x11, REJECT: 0x12, REQUEST: 0x20, REPLY: 0x21,
  PREPARE: 0x30, PROMISE: 0x31, FETCH: 0x32, ENTRIES: 0x33, ADMIT: 0x34, TRUNCATE: 0x35,
};
const TYPE_NAME = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k]));
const R = { STALE_EPOCH: 1, DIVERGED: 2, BAD_ENTRY: 3, WRONG_OBJECT: 4 };

const BUGS = ['ack-before-fsync', 'no-epoch-check', 'volatile-promise', 'no-chain-check', 'ack-one-more'];

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3 / zlib), table driven, protocol.md §2

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf, start = 0, end = buf.length) {
  let c = 0xFFFFFFFF;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// BLAKE2b (RFC 7693), unkeyed, any digest length 1..64, 64-bit words as pairs of u32
// (low word first). The digest length is in the parameter block: blake2b-128 is NOT a
// truncated blake2b-512 (protocol.md §2).

const B2_IV = new Uint32Array([
  0xF3BCC908, 0x6A09E667, 0x84CAA73B, 0xBB67AE85, 0xFE94F82B, 0x3C6EF372, 0x5F1D36F1, 0xA54FF53A,
  0xADE682D1, 0x510E527F, 0x2B3E6C1F, 0x9B05688C, 0xFB41BD6B, 0x1F83D9AB, 0x137E2179, 0x5BE0CD19,
]);
const B2_SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];
const B2_V = new Uint32Array(32);
const B2_M = new Uint32Array(32);

function b2Add(v, a, b) { // v[a] += v[b] (64-bit)
  const lo = v[a] + v[b];
  let hi = v[a + 1] + v[b + 1];
  if (lo >= 0x100000000) hi++;
  v[a] = lo; v[a + 1] = hi;
}
function b2AddM(v, a, m, i) { // v[a] += m[i] (64-bit)
  const lo = v[a] + m[i];
  let hi = v[a + 1] + m[i + 1];
  if (lo >= 0x100000000) hi++;
  v[a] = lo; v[a + 1] = hi;
}
function b2G(v, m, a, b, c, d, x, y) {
  b2Add(v, a, b); b2AddM(v, a, m, x);
  let x0 = v[d] ^ v[a], x1 = v[d + 1] ^ v[a + 1];
  v[d] = x1; v[d + 1] = x0; // rotr 32
  b2Add(v, c, d);
  x0 = v[b] ^ v[c]; x1 = v[b + 1] ^ v[c + 1];
  v[b] = (x0 >>> 24) ^ (x1 << 8); v[b + 1] = (x1 >>> 24) ^ (x0 << 8); // rotr 24
  b2Add(v, a, b); b2AddM(v, a, m, y);
  x0 = v[d] ^ v[a]; x1 = v[d + 1] ^ v[a + 1];
  v[d] = (x0 >>> 16) ^ (x1 << 16); v[d + 1] = (x1 >>> 16) ^ (x0 << 16); // rotr 16
  b2Add(v, c, d);
  x0 = v[b] ^ v[c]; x1 = v[b + 1] ^ v[c + 1];
  v[b] = (x1 >>> 31) ^ (x0 << 1); v[b + 1] = (x0 >>> 31) ^ (x1 << 1); // rotr 63
}
function b2Compress(h, block, off, t, last) {
  const v = B2_V, m = B2_M;
  for (let i = 0; i < 16; i++) { v[i] = h[i]; v[i + 16] = B2_IV[i]; }
  v[24] ^= t >>> 0;
  v[25] ^= Math.floor(t / 0x100000000) >>> 0;
  if (last) { v[28] = ~v[28]; v[29] = ~v[29]; }
  for (let i = 0; i < 32; i++) m[i] = block.readUInt32LE(off + 4 * i);
  for (let r = 0; r < 12; r++) {
    const s = B2_SIGMA[r % 10];
    b2G(v, m, 0, 8, 16, 24, 2 * s[0], 2 * s[1]);
    b2G(v, m, 2, 10, 18, 26, 2 * s[2], 2 * s[3]);
    b2G(v, m, 4, 12, 20, 28, 2 * s[4], 2 * s[5]);
    b2G(v, m, 6, 14, 22, 30, 2 * s[6], 2 * s[7]);
    b2G(v, m, 0, 10, 20, 30, 2 * s[8], 2 * s[9]);
    b2G(v, m, 2, 12, 22, 24, 2 * s[10], 2 * s[11]);
    b2G(v, m, 4, 14, 16, 26, 2 * s[12], 2 * s[13]);
    b2G(v, m, 6, 8, 18, 28, 2 * s[14], 2 * s[15]);
  }
  for (let i = 0; i < 16; i++) h[i] = h[i] ^ v[i] ^ v[i + 16];
}

class Blake2b {
  constructor(outlen) {
    if (!(outlen >= 1 && outlen <= 64)) throw new Error('blake2b: bad digest length');
    this.outlen = outlen;
    this.h = new Uint32Array(B2_IV);
    this.h[0] ^= 0x01010000 ^ outlen; // param block: digest length, key length 0, fanout 1, depth 1
    this.buf = Buffer.alloc(128);
    this.n = 0; // bytes in buf
    this.t = 0; // bytes compressed so far
  }
  update(data) {
    let i = 0;
    while (i < data.length) {
      if (this.n === 128) { // compress only when more data follows: the last block is final
        this.t += 128;
        b2Compress(this.h, this.buf, 0, this.t, false);
        this.n = 0;
      }
      const k = Math.min(128 - this.n, data.length - i);
      data.copy(this.buf, this.n, i, i + k);
      this.n += k; i += k;
    }
    return this;
  }
  digest() {
    this.t += this.n;
    this.buf.fill(0, this.n);
    b2Compress(this.h, this.buf, 0, this.t, true);
    const out = Buffer.alloc(this.outlen);
    for (let i = 0; i < this.outlen; i++) out[i] = this.h[i >> 2] >>> (8 * (i & 3));
    return out;
  }
}
function blake2b(data, outlen) { return new Blake2b(outlen).update(data).digest(); }

// ---------------------------------------------------------------------------------------------
// Entry format v1 (protocol.md §3)

class EntryError extends Error {
  constructor(msg, unsupported = false) { super(msg); this.unsupported = unsupported; }
}

// §3.5, in order. Returns {seq, epoch, chain, buf}.
function decodeEntry(b) {
  const L = b.length;
  if (L < 72) throw new EntryError(`entry too short (${L} bytes)`);
  if (b.readUInt32BE(0) !== 0x57524C45) throw new EntryError('bad magic');
  const version = b.readUInt16BE(4);
  if (version !== 1) throw new EntryError(`unsupported entry format version ${version}`, true);
  const want = b.readUInt32BE(L - 4);
  const got = crc32(b, 0, L - 4);
  if (got !== want) throw new EntryError(`crc32 mismatch (stored ${hex32(want)}, computed ${hex32(got)})`);
  const flags = b.readUInt16BE(6);
  if (flags !== 0) throw new EntryError(`unknown flags 0x${flags.toString(16)}`);
  const pageSize = b.readUInt32BE(32);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new EntryError(`invalid page size ${pageSize}`);
  }
  const seq = b.readBigUInt64BE(16);
  if (seq < 1n) throw new EntryError('seq < 1');
  const frameCount = b.readUInt32BE(40);
  const expect = 68 + frameCount * (4 + pageSize) + 4; // < 2^53: exact in a double
  if (L !== expect) throw new EntryError(`length mismatch: ${L} bytes, header says ${expect}`);
  let prev = 0;
  for (let i = 0; i < frameCount; i++) {
    const pgno = b.readUInt32BE(68 + i * (4 + pageSize));
    if (pgno <= prev) throw new EntryError(`page numbers not strictly increasing (frame ${i}: ${pgno})`);
    prev = pgno;
  }
  return { seq, epoch: b.readBigUInt64BE(8), chain: Buffer.from(b.subarray(52, 68)), buf: b };
}

// §3.2: chain(n) = blake2b-128(chain(n-1) || entry[0:52] || entry[68:L-4])
function chainOf(prevChain, b) {
  return new Blake2b(16).update(prevChain).update(b.subarray(0, 52)).update(b.subarray(68, b.length - 4)).digest();
}

function hex32(x) { return '0x' + (x >>> 0).toString(16).padStart(8, '0'); }
function hexc(b) { return b ? b.toString('hex') : 'unknown'; }

// ---------------------------------------------------------------------------------------------
// Small helpers

function log(...a) { process.stderr.write(`${new Date().toISOString()} replica ${OPTS ? OPTS.id : '?'}: ${a.join(' ')}\n`); }
function u64(x) { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(x)); return b; }
function u32(x) { const b = Buffer.alloc(4); b.writeUInt32BE(x); return b; }

class ProtocolError extends Error {}

function fsyncDir(dir) {
  const fd = fs.openSync(dir, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

// mkdir -p that fsyncs the parent of every directory it creates (protocol.md §8 known gap:
// a careful store makes each new directory's name durable before its first ACK).
function mkdirsDurable(dir) {
  dir = path.resolve(dir);
  if (fs.existsSync(dir)) return;
  mkdirsDurable(path.dirname(dir));
  try { fs.mkdirSync(dir); } catch (e) { if (e.code !== 'EEXIST') throw e; }
  fsyncDir(path.dirname(dir));
}

// Atomic replace: write tmp, fsync, rename, fsync the directory.
function writeFileAtomic(file, data) {
  const tmp = file + '.tmp';
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    let off = 0;
    while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
    fs.fsyncSync(fd);
  } finally { fs.closeSync(fd); }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

function writeAll(fd, buf, pos) {
  let off = 0;
  while (off < buf.length) { off += fs.writeSync(fd, buf, off, buf.length - off, pos + off); }
}

// Read a non-negative integer field exactly (JSON.parse would round above 2^53).
function jsonInt(text, key, dflt) {
  const m = new RegExp(`"${key}"\\s*:\\s*(-?\\d+)(?![\\d.eE])`).exec(text);
  if (!m) return dflt;
  const v = BigInt(m[1]);
  if (v < 0n || v > U64_MAX) throw new Error(`${key} out of range: ${m[1]}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Per-object durable store (layout: README.md, "Data layout")
//
//   DATA/objects/<object>/state.json   {"promised_epoch", "archived_through", "log_epoch", "voter"}
//   DATA/objects/<object>/entries.log  records: u32 length (BE) || entry bytes, as received

class StoreCorrupt extends Error {}

class ObjectStore {
  constructor(name, dir) {
    this.name = name;
    this.dir = dir;
    this.stateFile = path.join(dir, 'state.json');
    this.logFile = path.join(dir, 'entries.log');
    this.promised = 0n;
    this.logEpoch = 0n;
    this.voter = true;
    this.archivedThrough = 0n;
    this.metas = []; // {seq, chain, off, len} for each held entry, in order; off = record start
    this.fileSize = 0; // logical size of entries.log (includes deferred writes, bug mode)
    this.fd = null;
    this.baseOffer = null; // volatile (§5.15)
    this.conns = new Set();
    this.deferred = []; // bug ack-before-fsync: [{pos, buf}] not yet written
    this.deferTimer = null;
    this.broken = false;
  }

  // ---- derived state
  lastSeq() { return this.metas.length ? this.metas[this.metas.length - 1].seq : 0n; }
  lastChain() { return this.metas.length ? this.metas[this.metas.length - 1].chain : GENESIS; }
  firstSeq() { return this.metas.length ? this.metas[0].seq : 0n; }
  heldChain(s) { // chain of the held entry at seq s; genesis for 0; null if not held
    if (s === 0n) return GENESIS;
    if (!this.metas.length) return null;
    const i = s - this.metas[0].seq;
    if (i < 0n || i >= BigInt(this.metas.length)) return null;
    return this.metas[Number(i)].chain;
  }
  // PROMISE truncated_through: entries 1..t may no longer be held (§5.11), <= last_seq. This store
  // never drops entries except when it takes a base (§5.15), but it reports archived_through
  // (the TRUNCATE point it accepted, or the base seq), as `walrelay conform` (R-5.15-2) expects.
  truncatedThrough() {
    const last = this.lastSeq();
    return this.archivedThrough < last ? this.archivedThrough : last;
  }

  // ---- opening
  static open(name, dataDir, placementDir) {
    const dir = path.join(dataDir, 'objects', name);
    const st = new ObjectStore(name, dir);
    if (!fs.existsSync(st.stateFile)) {
      st.create(placementDir);
    } else {
      st.loadState();
      st.scanLog();
    }
    return st;
  }

  create(placementDir) {
    // §6.1 voter / failover.md: no state for this object: with an allocator, a non-voter that
    // promised the allocator's current epoch, saved before anything is answered.
    let promised = 0n, voter = true;
    if (placementDir) {
      promised = readPlacementEpoch(placementDir, this.name);
      voter = false;
    }
    mkdirsDurable(this.dir);
    for (const f of [this.logFile, this.logFile + '.tmp', this.stateFile + '.tmp']) {
      if (fs.existsSync(f)) { log(`object ${this.name}: no state.json, removing leftover ${f}`); fs.unlinkSync(f); }
    }
    this.fd = fs.openSync(this.logFile, 'w+', 0o644);
    fs.fsyncSync(this.fd);
    fsyncDir(this.dir);
    this.promised = promised; this.voter = voter;
    this.saveState();
    log(`object ${this.name}: created (no state): promised ${promised}, ${voter ? 'voter' : 'non-voter'}`);
  }

  loadState() {
    let text;
    try {
      text = fs.readFileSync(this.stateFile, 'utf8');
      const j = JSON.parse(text);
      if (typeof j !== 'object' || j === null) throw new Error('not a JSON object');
      this.promised = jsonInt(text, 'promised_epoch', 0n);
      this.archivedThrough = jsonInt(text, 'archived_through', 0n);
      this.logEpoch = jsonInt(text, 'log_epoch', 0n);
      this.voter = j.voter === undefined ? true : j.voter === true;
    } catch (e) {
      throw new StoreCorrupt(`${this.stateFile}: unreadable (${e.message}); refusing to open object`);
    }
    if (BUG === 'volatile-promise') this.promised = 0n;
  }

  scanLog() {
    if (!fs.existsSync(this.logFile)) {
      this.fd = fs.openSync(this.logFile, 'w+', 0o644);
      fs.fsyncSync(this.fd);
      fsyncDir(this.dir);
      return;
    }
    this.fd = fs.openSync(this.logFile, 'r+');
    const data = fs.readFileSync(this.logFile);
    const size = data.length;
    let off = 0;
    const metas = [];
    while (off < size) {
      let bad = null;
      let rec = null;
      if (size - off < 4) bad = 'torn length prefix';
      else {
        const n = data.readUInt32BE(off);
        if (off + 4 + n > size) bad = `record of ${n} bytes runs past the end of the file`;
        else {
          const b = data.subarray(off + 4, off + 4 + n);
          if (n >= 6 && b.readUInt32BE(0) === 0x57524C45 && b.readUInt16BE(4) !== 1) {
            throw new StoreCorrupt(`${this.logFile}: offset ${off}: entry format version ${b.readUInt16BE(4)}: ` +
              'this log was written by another version, refusing to truncate it');
          }
          try {
            rec = decodeEntry(b);
            if (metas.length) {
              const p = metas[metas.length - 1];
              if (rec.seq !== p.seq + 1n) bad = `seq ${rec.seq} after ${p.seq}`;
              else if (BUG !== 'no-chain-check' && !chainOf(p.chain, b).equals(rec.chain)) bad = `seq ${rec.seq} does not follow the chain`;
            }
          } catch (e) {
            if (!(e instanceof EntryError)) throw e;
            bad = e.message;
          }
        }
      }
      if (bad) {
        const later = findDecodableAfter(data, off);
        if (later !== null) {
          throw new StoreCorrupt(`${this.logFile}: corrupt record at offset ${off} (${bad}) with data after it ` +
            `(a record at offset ${later}); refusing to start this object`);
        }
        log(`object ${this.name}: torn tail at offset ${off} (${bad}): cutting ${size - off} bytes`);
        fs.ftruncateSync(this.fd, off);
        fs.fsyncSync(this.fd);
        break;
      }
      metas.push({ seq: rec.seq, chain: rec.chain, off, len: rec.buf.length });
      off += 4 + rec.buf.length;
    }
    this.metas = metas;
    this.fileSize = off;
    log(`object ${this.name}: opened: promised ${this.promised}, log_epoch ${this.logEpoch}, ` +
      `${this.voter ? 'voter' : 'non-voter'}, entries ${this.firstSeq()}..${this.lastSeq()}, archived_through ${this.archivedThrough}`);
  }

  // ---- persistence
  saveState() {
    const promised = BUG === 'volatile-promise' ? 0n : this.promised;
    const text = `{"archived_through": ${this.archivedThrough}, "log_epoch": ${this.logEpoch}, ` +
      `"promised_epoch": ${promised}, "voter": ${this.voter ? 'true' : 'false'}}\n`;
    writeFileAtomic(this.stateFile, Buffer.from(text));
  }

  // Append entries (already checked to follow the log) durably.
  appendEntries(entries) {
    if (!entries.length) return;
    const parts = [];
    let total = 0;
    const newMetas = [];
    let off = this.fileSize;
    for (const e of entries) {
      parts.push(u32(e.buf.length), e.buf);
      newMetas.push({ seq: e.seq, chain: e.chain, off, len: e.buf.length });
      off += 4 + e.buf.length;
      total += 4 + e.buf.length;
    }
    const blob = Buffer.concat(parts, total);
    if (BUG === 'ack-before-fsync') {
      this.deferred.push({ pos: this.fileSize, buf: blob });
      if (!this.deferTimer) {
        this.deferTimer = setTimeout(() => {
          this.deferTimer = null;
          try { this.flushDeferred(); } catch (e) { breakObject(this, e); }
        }, 100);
      }
    } else {
      writeAll(this.fd, blob, this.fileSize);
      fs.fdatasyncSync(this.fd);
    }
    this.fileSize = off;
    for (const m of newMetas) this.metas.push(m);
  }

  flushDeferred() {
    if (!this.deferred.length) return;
    const d = this.deferred;
    this.deferred = [];
    for (const { pos, buf } of d) writeAll(this.fd, buf, pos);
    fs.fdatasyncSync(this.fd);
  }

  // Drop every entry after seq k (a truncation is durable before what follows it).
  truncateAfter(k) {
    let i = this.metas.length;
    while (i > 0 && this.metas[i - 1].seq > k) i--;
    if (i === this.metas.length) return;
    this.flushDeferred();
    const off = this.metas[i].off;
    if (this.archivedThrough > k) { // the archived prefix now ends at k at most (same entries 1..k)
      this.archivedThrough = k;
      this.saveState();
    }
    fs.ftruncateSync(this.fd, off);
    fs.fsyncSync(this.fd);
    this.metas.length = i;
    this.fileSize = off;
  }

  // §5.15: replace the whole log by one entry, atomically (new file, fsync, rename, fsync dir).
  replaceWithOne(e) {
    this.flushDeferred();
    const blob = Buffer.concat([u32(e.buf.length), e.buf]);
    writeFileAtomic(this.logFile, blob);
    fs.closeSync(this.fd);
    this.fd = fs.openSync(this.logFile, 'r+');
    this.metas = [{ seq: e.seq, chain: e.chain, off: 0, len: e.buf.length }];
    this.fileSize = blob.length;
  }

  // §5.15, a base at seq 0: the log becomes empty, atomically.
  replaceWithNone() {
    this.flushDeferred();
    writeFileAtomic(this.logFile, Buffer.alloc(0));
    fs.closeSync(this.fd);
    this.fd = fs.openSync(this.logFile, 'r+');
    this.metas = [];
    this.fileSize = 0;
  }

  readEntry(m) {
    this.flushDeferred();
    const b = Buffer.alloc(m.len);
    let got = 0;
    while (got < m.len) {
      const n = fs.readSync(this.fd, b, got, m.len - got, m.off + 4 + got);
      if (n === 0) throw new Error(`short read at offset ${m.off}`);
      got += n;
    }
    return b;
  }

  close() {
    if (this.deferTimer) { clearTimeout(this.deferTimer); this.deferTimer = null; }
    if (this.fd !== null) { try { fs.closeSync(this.fd); } catch (_) { /* ignore */ } this.fd = null; }
  }
}

// "a decodable record after X" (protocol.md §8): a WRLE at i >= X+1 (i >= 4) whose u32 at i-4
// is a length n with i+n <= size and whose bytes pass §3.5. A complete record with the magic
// and an unknown version also counts as data (the careful variant of the §8 known gap).
function findDecodableAfter(data, X) {
  const size = data.length;
  const magic = Buffer.from('WRLE');
  let i = Math.max(X + 1, 4);
  for (;;) {
    i = data.indexOf(magic, i);
    if (i < 0) return null;
    const n = data.readUInt32BE(i - 4);
    if (i + n <= size && n >= 6) {
      const b = data.subarray(i, i + n);
      if (b.readUInt16BE(4) !== 1) return i - 4;
      try { decodeEntry(b); return i - 4; } catch (_) { /* not decodable */ }
    }
    i += 1;
  }
}

// The allocator's current() (failover.md): PLACEMENT/<object>.epoch holds the highest epoch
// issued as a checksummed state file, exactly the line {"crc32":C,"state":{"epoch":N}} and a
// newline, where C is the CRC-32 of {"epoch":N}. Missing file: no epoch issued yet, 0. Anything
// else (a flipped bit, the old plain decimal) is refused, never guessed. Matched as text: N may
// be above 2^53, which JSON.parse would round.
function readPlacementEpoch(dir, name) {
  const f = path.join(dir, `${name}.epoch`);
  let text;
  try { text = fs.readFileSync(f, 'utf8'); } catch (e) {
    if (e.code === 'ENOENT') return 0n;
    throw e;
  }
  const m = /^\{"crc32":(0|[1-9]\d*),"state":\{"epoch":(0|[1-9]\d*)\}\}\n$/.exec(text);
  if (!m) throw new StoreCorrupt(`${f}: not an epoch state file: ${JSON.stringify(text.slice(0, 60))}`);
  if (crc32(Buffer.from(`{"epoch":${m[2]}}`)) !== Number(m[1])) throw new StoreCorrupt(`${f}: checksum mismatch: the file is damaged`);
  const v = BigInt(m[2]);
  if (v > U64_MAX) throw new StoreCorrupt(`${f}: epoch out of range`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Objects of this process

const OBJECTS = new Map(); // name -> ObjectStore

function getObject(name) {
  let o = OBJECTS.get(name);
  if (o) return o;
  o = ObjectStore.open(name, OPTS.data, OPTS.placement);
  OBJECTS.set(name, o);
  return o;
}

// A persistence failure (or a bug) in one object: fail-stop that object only. Its in-memory
// state is dropped (it may be ahead of the disk, §6.2) and reloaded from disk on the next HELLO.
function breakObject(o, err) {
  log(`object ${o.name}: FAILED, dropping in-memory state and its connections: ${err && err.stack ? err.stack : err}`);
  o.broken = true;
  if (OBJECTS.get(o.name) === o) OBJECTS.delete(o.name);
  for (const c of o.conns) c.destroy();
  o.conns.clear();
  o.close();
}

// ---------------------------------------------------------------------------------------------
// Connections

let CONN_SEQ = 0;

class Conn {
  constructor(sock) {
    this.sock = sock;
    this.id = ++CONN_SEQ;
    this.peer = `${sock.remoteAddress}:${sock.remotePort}`;
    this.chunks = [];
    this.avail = 0;
    this.obj = null;
    this.closing = false;
    sock.setNoDelay(true);
    sock.on('data', (d) => this.onData(d));
    sock.on('error', (e) => { if (e.code !== 'ECONNRESET' && e.code !== 'EPIPE') log(`conn ${this.id}: ${e.message}`); });
    sock.on('close', () => { this.closing = true; if (this.obj) this.obj.conns.delete(this); });
  }

  destroy() { this.closing = true; this.sock.destroy(); }

  send(type, body) {
    if (this.closing && type !== T.REJECT) return;
    const h = Buffer.alloc(6);
    h.writeUInt32BE(body.length + 2, 0);
    h[4] = 1; h[5] = type;
    this.sock.write(Buffer.concat([h, body]));
  }

  // ---- framing (§5.1)
  onData(d) {
    if (this.closing) return;
    this.chunks.push(d);
    this.avail += d.length;
    while (!this.closing && this.avail >= 4) {
      if (this.chunks[0].length < 4) this.coalesce(4);
      const length = this.chunks[0].readUInt32BE(0);
      if (length > MAX_FRAME) return this.protocolError(`frame length ${length} exceeds the maximum ${MAX_FRAME}`);
      if (length < 2) return this.protocolError(`frame length ${length} < 2`);
      if (this.avail < 4 + length) return;
      const frame = this.take(4 + length).subarray(4);
      this.onFrame(frame);
    }
  }
  coalesce(n) {
    const b = Buffer.concat(this.chunks);
    this.chunks = [b];
    void n;
  }
  take(n) {
    let out;
    if (this.chunks[0].length >= n) {
      out = this.chunks[0].subarray(0, n);
      if (this.chunks[0].length === n) this.chunks.shift(); else this.chunks[0] = this.chunks[0].subarray(n);
    } else {
      const parts = [];
      let need = n;
      while (need > 0) {
        const c = this.chunks[0];
        if (c.length <= need) { parts.push(c); this.chunks.shift(); need -= c.length; } else {
          parts.push(c.subarray(0, need)); this.chunks[0] = c.subarray(need); need = 0;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.avail -= n;
    return out;
  }

  protocolError(msg) {
    if (this.closing) return;
    log(`conn ${this.id} (${this.peer}${this.obj ? ', object ' + this.obj.name : ''}): protocol error: ${msg}`);
    this.sendReject(R.BAD_ENTRY, 0n, `protocol error: ${msg}`);
    this.closeSoon();
  }
  sendReject(reason, promised, msg) {
    let m = Buffer.from(msg, 'utf8');
    if (m.length > 65535) m = m.subarray(0, 65535);
    const b = Buffer.alloc(11);
    b[0] = reason; b.writeBigUInt64BE(promised, 1); b.writeUInt16BE(m.length, 9);
    this.send(T.REJECT, Buffer.concat([b, m]));
  }
  closeSoon() { // best-effort send (1 s), then close
    this.closing = true;
    if (this.obj) this.obj.conns.delete(this);
    this.sock.end();
    setTimeout(() => this.sock.destroy(), 1000).unref();
  }

  onFrame(frame) {
    const version = frame[0], type = frame[1], body = frame.subarray(2);
    if (version !== 1) return this.protocolError(`unsupported wire version ${version}`);
    if (!(type in TYPE_NAME)) return this.protocolError(`unknown message type 0x${type.toString(16).padStart(2, '0')}`);
    if (!this.obj) {
      if (type !== T.HELLO) return this.protocolError(`first message is ${TYPE_NAME[type]}, not a primary's HELLO`);
      return this.guard(() => this.onHello(body));
    }
    const o = this.obj;
    if (o.broken) { this.destroy(); return; }
    this.guard(() => {
      switch (type) {
        case T.PREPARE: return this.onPrepare(body);
        case T.APPEND: return this.onAppend(body);
        case T.FETCH: return this.onFetch(body);
        case T.ADMIT: return this.onAdmit(body);
        case T.TRUNCATE: return this.onTruncate(body);
        default: throw new ProtocolError(`unexpected ${TYPE_NAME[type]} after the handshake`);
      }
    });
  }

  guard(fn) {
    try { fn(); } catch (e) {
      if (e instanceof ProtocolError) return this.protocolError(e.message);
      if (this.obj) return breakObject(this.obj, e);
      log(`conn ${this.id}: ${e.stack || e}`);
      this.destroy();
    }
  }

  // ---- HELLO (§5.3, §5.8)
  onHello(body) {
    if (body.length < 43) throw new ProtocolError(`HELLO body of ${body.length} bytes, expected at least 43`);
    const nameLen = body.readUInt16BE(41);
    if (body.length !== 43 + nameLen) throw new ProtocolError(`HELLO body of ${body.length} bytes, expected ${43 + nameLen}`);
    const role = body[0];
    if (role < 1 || role > 3) throw new ProtocolError(`unknown role ${role} in HELLO`);
    if (role !== 1) throw new ProtocolError(`first message is a HELLO with role ${role}, not a primary's HELLO`);
    const nameBytes = Buffer.from(body.subarray(43));
    let name;
    try { name = new TextDecoder('utf-8', { fatal: true }).decode(nameBytes); } catch (_) {
      throw new ProtocolError('object name in HELLO is not valid UTF-8');
    }
    const epoch = body.readBigUInt64BE(9);
    if (!OBJECT_RE.test(name)) {
      log(`conn ${this.id}: HELLO for invalid object name ${JSON.stringify(name)}: WRONG_OBJECT`);
      this.sendReject(R.WRONG_OBJECT, 0n, `cannot serve object ${JSON.stringify(name)}: invalid object name`);
      this.closeSoon();
      return;
    }
    let o;
    try { o = getObject(name); } catch (e) {
      // Cannot open this object's store (corrupt log, unreadable state, I/O error): the other
      // objects keep running; this one cannot be served.
      log(`object ${name}: cannot open: ${e.message}`);
      this.sendReject(R.WRONG_OBJECT, 0n, `cannot serve object ${JSON.stringify(name)}: ${e.message}`);
      this.closeSoon();
      return;
    }
    this.obj = o;
    o.conns.add(this);
    log(`conn ${this.id} (${this.peer}): HELLO object ${name} epoch ${epoch}`);
    const b = Buffer.alloc(43);
    b[0] = 2;
    b.writeBigUInt64BE(OPTS.id, 1);
    b.writeBigUInt64BE(o.promised, 9);
    b.writeBigUInt64BE(o.lastSeq(), 17);
    o.lastChain().copy(b, 25);
    b.writeUInt16BE(nameBytes.length, 41);
    this.send(T.HELLO, Buffer.concat([b, nameBytes]));
  }

  // ---- PREPARE (§5.10) -> PROMISE (§5.11) or REJECT(STALE_EPOCH)
  onPrepare(body) {
    if (body.length !== 8) throw new ProtocolError(`PREPARE body of ${body.length} bytes, expected 8`);
    const epoch = body.readBigUInt64BE(0);
    if (epoch === 0n) throw new ProtocolError('PREPARE epoch 0');
    const o = this.obj;
    if (epoch < o.promised) {
      return this.sendReject(R.STALE_EPOCH, o.promised, `PREPARE epoch ${epoch} < promised epoch ${o.promised}`);
    }
    if (epoch > o.promised) { o.promised = epoch; o.saveState(); }
    const b = Buffer.alloc(49);
    b.writeBigUInt64BE(epoch, 0);
    b.writeBigUInt64BE(o.logEpoch, 8);
    b.writeBigUInt64BE(o.lastSeq(), 16);
    o.lastChain().copy(b, 24);
    b.writeBigUInt64BE(o.truncatedThrough(), 40);
    b[48] = o.voter ? 1 : 0;
    this.send(T.PROMISE, b);
  }

  sendAck(logEnd) {
    const o = this.obj;
    let stored = o.lastSeq();
    if (BUG === 'ack-one-more' && logEnd !== undefined && stored + 1n <= logEnd) stored += 1n;
    const b = Buffer.alloc(40);
    b.writeBigUInt64BE(o.promised, 0);
    b.writeBigUInt64BE(stored, 8);
    o.lastChain().copy(b, 16);
    b.writeBigUInt64BE(o.logEpoch, 32);
    this.send(T.ACK, b);
  }

  // ---- APPEND (§5.4, §6.2)
  onAppend(body) {
    if (body.length < 28) throw new ProtocolError(`APPEND body of ${body.length} bytes, expected at least 28`);
    const epoch = body.readBigUInt64BE(0);
    const logEnd = body.readBigUInt64BE(16);
    const entries = decodeEntryList(body, 24, 'APPEND');
    if (entries.length && logEnd < entries[entries.length - 1].seq) {
      throw new ProtocolError(`APPEND log_end ${logEnd} < its last entry's seq ${entries[entries.length - 1].seq}`);
    }
    const o = this.obj;
    if (epoch < o.promised && BUG !== 'no-epoch-check') {
      return this.sendReject(R.STALE_EPOCH, o.promised, `APPEND epoch ${epoch} < promised epoch ${o.promised}`);
    }
    if (epoch > o.promised) { o.promised = epoch; o.saveState(); } // implicit promise, persisted first
    const adopting = epoch !== o.logEpoch;
    if (adopting && (!entries.length || entries[entries.length - 1].seq !== logEnd)) {
      return this.sendAck(logEnd); // adopt another epoch's log only from a frame through log_end
    }
    if (adopting && o.baseOffer && o.baseOffer.through === 0n) {
      // A base at seq 0 (a restore to the empty database, §5.15): the log starts empty, and the
      // frame from seq 1 (whose first entry follows the offered chain) is then taken as usual.
      const f = entries[0], bo = o.baseOffer;
      const held = o.heldChain(f.seq);
      if (bo.epoch === epoch && f.seq === 1n && chainOf(bo.chain, f.buf).equals(f.chain) && !(held && held.equals(f.chain))) {
        log(`object ${o.name}: taking the empty base offered by epoch ${epoch}`);
        o.archivedThrough = 0n; o.logEpoch = 0n;
        o.saveState();
        o.replaceWithNone();
      }
    } else if (adopting && o.baseOffer) {
      const f = entries[0], bo = o.baseOffer;
      const held = o.heldChain(f.seq);
      if (bo.epoch === epoch && bo.through === f.seq && bo.chain.equals(f.chain) && !(held && held.equals(f.chain))) {
        log(`object ${o.name}: taking base (${f.seq}, ${hexc(f.chain)}) offered by epoch ${epoch}`);
        o.archivedThrough = f.seq; o.logEpoch = 0n;
        o.saveState();
        o.replaceWithOne(f);
      }
    }
    const noChain = BUG === 'no-chain-check';
    const pending = [];
    let curLast = o.lastSeq(), curChain = o.lastChain();
    let touched = null; // last seq of the frame held identically or accepted
    let diverged = null;
    for (const e of entries) {
      if (e.seq <= curLast) {
        const h = o.heldChain(e.seq);
        if (h === null) continue; // below the log's start: harmless duplicate
        if (h.equals(e.chain)) { touched = e.seq; continue; }
        const prev = o.heldChain(e.seq - 1n);
        if (adopting && pending.length === 0 && prev !== null && (noChain || chainOf(prev, e.buf).equals(e.chain))) {
          log(`object ${o.name}: epoch ${epoch} replaces the log after seq ${e.seq - 1n} (held to ${curLast} under log epoch ${o.logEpoch})`);
          o.truncateAfter(e.seq - 1n);
          curLast = e.seq - 1n; curChain = prev;
        } else if (noChain) {
          continue; // bug: a differing held entry is treated as a duplicate
        } else {
          diverged = `entry ${e.seq} has chain ${hexc(e.chain)}, the replica holds ${hexc(h)}` +
            (adopting ? (pending.length ? ' (after accepting entries of this frame)' : ' and the entry does not follow the held log') : ' under the same log epoch');
          break;
        }
      }
      if (e.seq > curLast + 1n) break; // gap: the ACK says where the log ends
      if (!noChain && !chainOf(curChain, e.buf).equals(e.chain)) {
        diverged = `entry ${e.seq} does not follow the chain at seq ${curLast} (${hexc(curChain)})`;
        break;
      }
      pending.push(e);
      curLast = e.seq; curChain = e.chain; touched = e.seq;
    }
    o.appendEntries(pending);
    if (diverged) {
      this.sendAck(logEnd);
      log(`object ${o.name}: DIVERGED: ${diverged}`);
      return this.sendReject(R.DIVERGED, o.promised, `diverged: ${diverged}`);
    }
    if (adopting && touched !== null) {
      o.truncateAfter(touched); // drop an older epoch's entries beyond the frame
      o.logEpoch = epoch;
      o.saveState(); // after the entries it describes, before the ACK
      log(`object ${o.name}: adopted the log of epoch ${epoch} through ${o.lastSeq()}`);
    }
    this.sendAck(logEnd);
  }

  // ---- FETCH (§5.12) -> ENTRIES (§5.13)
  onFetch(body) {
    if (body.length !== 20) throw new ProtocolError(`FETCH body of ${body.length} bytes, expected 20`);
    const epoch = body.readBigUInt64BE(0);
    const fromSeq = body.readBigUInt64BE(8);
    const maxBytes = body.readUInt32BE(16);
    if (epoch === 0n) throw new ProtocolError('FETCH epoch 0');
    if (fromSeq === 0n) throw new ProtocolError('FETCH from_seq 0');
    if (maxBytes === 0) throw new ProtocolError('FETCH max_bytes 0');
    const o = this.obj;
    if (epoch < o.promised) {
      return this.sendReject(R.STALE_EPOCH, o.promised, `FETCH epoch ${epoch} < promised epoch ${o.promised}`);
    }
    const first = o.firstSeq();
    if (o.metas.length && fromSeq < first) {
      throw new ProtocolError(`FETCH from_seq ${fromSeq}: this replica's log starts at ${first}`);
    }
    const parts = [];
    let sum = 0, frameBytes = 2 + 5, count = 0, lastSent = null;
    if (o.metas.length && fromSeq <= o.lastSeq()) {
      for (let i = Number(fromSeq - first); i < o.metas.length; i++) {
        const m = o.metas[i];
        // max_bytes bounds the entries as framed: 4 + entry_len each (protocol.md 5.12).
        if (count > 0 && (sum + 4 + m.len > maxBytes || frameBytes + 4 + m.len > MAX_FRAME)) break;
        parts.push(u32(m.len), o.readEntry(m));
        sum += 4 + m.len; frameBytes += 4 + m.len; count++; lastSent = m.seq;
      }
    }
    const head = Buffer.alloc(5);
    head[0] = (count === 0 || lastSent === o.lastSeq()) ? 1 : 0;
    head.writeUInt32BE(count, 1);
    this.send(T.ENTRIES, Buffer.concat([head, ...parts]));
  }

  // ---- ADMIT (§5.14): never answered
  onAdmit(body) {
    if (body.length !== 16) throw new ProtocolError(`ADMIT body of ${body.length} bytes, expected 16`);
    const epoch = body.readBigUInt64BE(0);
    const upto = body.readBigUInt64BE(8);
    if (epoch === 0n) throw new ProtocolError('ADMIT epoch 0');
    const o = this.obj;
    if (o.voter) return;
    const holds = epoch === o.logEpoch || (o.metas.length === 0 && upto === 0n);
    if (epoch >= o.promised && holds && o.lastSeq() >= upto) {
      o.voter = true;
      o.saveState();
      log(`object ${o.name}: admitted as a voter by epoch ${epoch} (upto ${upto})`);
    } else {
      log(`object ${o.name}: ignoring ADMIT(${epoch}, ${upto}): promised ${o.promised}, log_epoch ${o.logEpoch}, last_seq ${o.lastSeq()}`);
    }
  }

  // ---- TRUNCATE and base offers (§5.15): never answered
  onTruncate(body) {
    if (body.length !== 32) throw new ProtocolError(`TRUNCATE body of ${body.length} bytes, expected 32`);
    const epoch = body.readBigUInt64BE(0);
    const through = body.readBigUInt64BE(8);
    const chain = Buffer.from(body.subarray(16, 32));
    if (epoch === 0n) throw new ProtocolError('TRUNCATE epoch 0');
    const o = this.obj;
    if (epoch < o.promised && BUG !== 'no-epoch-check') return; // fenced: ignored entirely
    if (through === 0n) { // only ever a base offer: the empty database (a restore to seq 0)
      if (o.promised <= epoch) o.baseOffer = { epoch, through, chain };
      return;
    }
    const held = o.heldChain(through);
    if (held && held.equals(chain)) {
      if (through > o.archivedThrough) { o.archivedThrough = through; o.saveState(); }
      return;
    }
    if (o.promised <= epoch) o.baseOffer = { epoch, through, chain };
  }
}

// count x (u32 entry_len || entry) from body[off..], consumed exactly, each entry checked (§3.5),
// consecutive and increasing (§5.4).
function decodeEntryList(body, off, what) {
  const count = body.readUInt32BE(off);
  off += 4;
  const out = [];
  for (let i = 0; i < count; i++) {
    if (body.length - off < 4) throw new ProtocolError(`${what}: body ends inside entry ${i} of ${count}`);
    const n = body.readUInt32BE(off);
    off += 4;
    if (body.length - off < n) throw new ProtocolError(`${what}: entry ${i} of ${n} bytes runs past the body`);
    let e;
    try { e = decodeEntry(Buffer.from(body.subarray(off, off + n))); } catch (err) {
      if (err instanceof EntryError) throw new ProtocolError(`${what}: entry ${i}: ${err.message}`);
      throw err;
    }
    if (out.length && e.seq !== out[out.length - 1].seq + 1n) {
      throw new ProtocolError(`${what}: entries not consecutive (seq ${e.seq} after ${out[out.length - 1].seq})`);
    }
    out.push(e);
    off += n;
  }
  if (off !== body.length) throw new ProtocolError(`${what}: ${body.length - off} extra bytes after ${count} entries`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Self-test (RFC 7693 / protocol.md §3.7, §11) and command line

function selfTest() {
  const ok = blake2b(Buffer.from('abc'), 16).toString('hex') === 'cf4ab791c62b8d2b2109c90275287816' &&
    blake2b(Buffer.alloc(0), 16).toString('hex') === 'cae66941d9efbd404e4d88758ea67670' &&
    blake2b(Buffer.from('abc'), 64).toString('hex').startsWith('ba80a53f981c4d0d6a2797b69f12f6e9') &&
    crc32(Buffer.from('123456789')) === 0xCBF43926;
  if (!ok) { process.stderr.write('replica: hash self-test failed\n'); process.exit(70); }
}

// The walrelay identity in a certificate's subject alternative names ("URI:walrelay://C/R/N, ...").
function identityOf(san) {
  const m = /(?:^|,\s*)URI:walrelay:\/\/([A-Za-z0-9._-]+)\/([a-z]+)\/([A-Za-z0-9._-]+)(?:,|$)/.exec(san || '');
  return m ? { cluster: m[1], role: m[2], name: m[3] } : null;
}

let OPTS = null;
let BUG = null;

function usage(msg) {
  process.stderr.write(`replica: ${msg}\nusage: node replica.js replica --id ID --listen HOST:PORT --data DIR ` +
    `--placement DIR (--ca FILE --cert FILE --key FILE | --insecure) [--bug NAME]\n  bugs: ${BUGS.join(', ')}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  if (argv[0] !== 'replica') usage(`unknown command ${JSON.stringify(argv[0] || '')} (expected "replica")`);
  const o = { id: null, listen: null, data: null, placement: null, bug: null, ca: null, cert: null, key: null,
    insecure: false };
  const keys = { '--id': 'id', '--listen': 'listen', '--data': 'data', '--placement': 'placement', '--bug': 'bug',
    '--ca': 'ca', '--cert': 'cert', '--key': 'key' };
  for (let i = 1; i < argv.length; i++) {
    let a = argv[i], v;
    if (a === '--insecure') { o.insecure = true; continue; }
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); } else v = argv[++i];
    if (!(a in keys)) usage(`unknown option ${a}`);
    if (v === undefined) usage(`option ${a} needs a value`);
    o[keys[a]] = v;
  }
  if (o.id === null || o.listen === null || o.data === null) usage('--id, --listen and --data are required');
  // Mutual TLS (protocol.md 5.16): all three files, or plain TCP only when asked for.
  const tlsGiven = [o.ca, o.cert, o.key].filter((x) => x !== null).length;
  if (o.insecure && tlsGiven) usage('--insecure cannot go with --ca/--cert/--key');
  if (!o.insecure && tlsGiven !== 3) usage('give --ca, --cert and --key (mutual TLS, protocol.md 5.16), or --insecure');
  if (!/^\d+$/.test(o.id) || BigInt(o.id) > U64_MAX) usage(`--id must be an integer 0..2^64-1, got ${o.id}`);
  o.id = BigInt(o.id);
  const m = /^(.*):(\d+)$/.exec(o.listen);
  if (!m) usage(`--listen must be HOST:PORT, got ${o.listen}`);
  o.host = m[1].replace(/^\[(.*)\]$/, '$1');
  o.port = Number(m[2]);
  if (o.port > 65535) usage(`bad port in --listen ${o.listen}`);
  if (o.bug !== null && !BUGS.includes(o.bug)) {
    process.stderr.write(`replica: unknown --bug ${JSON.stringify(o.bug)}; known bugs: ${BUGS.join(', ')}\n`);
    process.exit(2);
  }
  return o;
}

function main() {
  OPTS = parseArgs(process.argv.slice(2));
  BUG = OPTS.bug;
  selfTest();
  mkdirsDurable(OPTS.data);
  if (BUG) log(`DELIBERATE BUG ENABLED: ${BUG}`);
  let server;
  if (OPTS.insecure) {
    log('WARNING: --insecure: plain TCP without authentication; any process can forge or delete log entries');
    server = net.createServer((sock) => new Conn(sock));
  } else {
    // Mutual TLS 1.3: the peer's certificate must verify against the CA, then name this cluster
    // and the role primary (R-5.16-2), or the connection closes before a frame is read.
    const readOrDie = (f) => { try { return fs.readFileSync(f); } catch (e) { usage(`${f}: ${e.message}`); } };
    const cert = readOrDie(OPTS.cert);
    const mine = identityOf(new crypto.X509Certificate(cert).subjectAltName);
    if (!mine) usage(`${OPTS.cert}: no walrelay://CLUSTER/ROLE/NAME identity in it`);
    server = tls.createServer({
      key: readOrDie(OPTS.key), cert, ca: readOrDie(OPTS.ca), requestCert: true, rejectUnauthorized: true,
      minVersion: 'TLSv1.3', handshakeTimeout: 10000,
    }, (sock) => {
      const peer = identityOf(sock.getPeerCertificate().subjectaltname);
      if (!peer || peer.cluster !== mine.cluster || peer.role !== 'primary') {
        const who = peer ? `${peer.role} '${peer.name}' of cluster '${peer.cluster}'` : 'no walrelay identity';
        log(`refused a connection: peer is ${who}; a replica takes primary here`);
        sock.destroy();
        return;
      }
      new Conn(sock);
    });
    server.on('tlsClientError', (e) => log(`refused a connection: TLS handshake failed: ${e.message}`));
  }
  server.on('error', (e) => { log(`listen ${OPTS.listen}: ${e.message}`); process.exit(1); });
  server.listen({ host: OPTS.host, port: OPTS.port }, () => {
    const a = server.address();
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    process.stdout.write(`LISTENING ${host}:${a.port}\n`);
    log(`listening on ${host}:${a.port}, data ${OPTS.data}, placement ${OPTS.placement || '(none)'}`);
  });
  const stop = (sig) => {
    log(`${sig}: stopping`);
    for (const o of OBJECTS.values()) { try { o.flushDeferred(); } catch (_) { /* ignore */ } }
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (require.main === module) main();

module.exports = { crc32, blake2b, Blake2b, decodeEntry, chainOf, findDecodableAfter };
