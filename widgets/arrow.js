// A minimal reader for the Arrow IPC *streaming* format, restricted to what harmony_lab sends.
//
// Supported column types: Null, Int (8/16/32/64, signed or not), FloatingPoint (32/64), Bool, Utf8,
// Timestamp (any unit; values are returned in that unit). Not supported (an Error names the type):
// dictionaries, compression, nested types, big-endian streams. Int64 values are returned as Number
// when they are exactly representable, otherwise as BigInt.
//
// decodeStream(bytes) -> { fields: [{name, nullable, type}], length, columns: {name: Array} }
// where type is {kind: "null"|"int"|"float"|"bool"|"utf8"|"timestamp", bits?, signed?, unit?, tz?}
// and the columns of all record batches are concatenated.

const TYPE_NAMES = [
  "NONE", "Null", "Int", "FloatingPoint", "Binary", "Utf8", "Bool", "Decimal", "Date", "Time",
  "Timestamp", "Interval", "List", "Struct", "Union", "FixedSizeBinary", "FixedSizeList", "Map",
  "Duration", "LargeBinary", "LargeUtf8", "LargeList", "RunEndEncoded", "BinaryView", "Utf8View",
  "ListView", "LargeListView",
];
const UNITS = ["s", "ms", "us", "ns"];
const HEADER_SCHEMA = 1;
const HEADER_DICTIONARY = 2;
const HEADER_RECORD_BATCH = 3;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const utf8 = new TextDecoder("utf-8");

// --- flatbuffers: just enough to walk tables, vectors, strings and scalars ----------------------
class FlatTable {
  constructor(view, pos) {
    this.view = view;
    this.pos = pos;
    const vtable = pos - view.getInt32(pos, true);
    this.vtable = vtable;
    this.vtableSize = view.getUint16(vtable, true);
  }
  offset(slot) {
    const o = 4 + 2 * slot;
    return o < this.vtableSize ? this.view.getUint16(this.vtable + o, true) : 0;
  }
  int8(slot, d = 0) { const o = this.offset(slot); return o ? this.view.getInt8(this.pos + o) : d; }
  uint8(slot, d = 0) { const o = this.offset(slot); return o ? this.view.getUint8(this.pos + o) : d; }
  int16(slot, d = 0) { const o = this.offset(slot); return o ? this.view.getInt16(this.pos + o, true) : d; }
  int32(slot, d = 0) { const o = this.offset(slot); return o ? this.view.getInt32(this.pos + o, true) : d; }
  int64(slot, d = 0) {
    const o = this.offset(slot);
    return o ? Number(this.view.getBigInt64(this.pos + o, true)) : d;
  }
  bool(slot, d = false) { const o = this.offset(slot); return o ? this.view.getUint8(this.pos + o) !== 0 : d; }
  indirect(at) { return at + this.view.getUint32(at, true); }
  table(slot) {
    const o = this.offset(slot);
    return o ? new FlatTable(this.view, this.indirect(this.pos + o)) : null;
  }
  vector(slot) {  // -> {start, length} or null
    const o = this.offset(slot);
    if (!o) return null;
    const at = this.indirect(this.pos + o);
    return { start: at + 4, length: this.view.getUint32(at, true) };
  }
  tables(slot) {
    const v = this.vector(slot);
    const out = [];
    if (v) for (let i = 0; i < v.length; i++) out.push(new FlatTable(this.view, this.indirect(v.start + 4 * i)));
    return out;
  }
  string(slot) {
    const v = this.vector(slot);
    if (!v) return null;
    const b = new Uint8Array(this.view.buffer, this.view.byteOffset + v.start, v.length);
    return utf8.decode(b);
  }
}

function flatRoot(view) {
  return new FlatTable(view, view.getUint32(0, true));
}

// --- schema -------------------------------------------------------------------------------------
function readType(field) {
  const typeId = field.uint8(2);
  const t = field.table(3);
  switch (typeId) {
    case 1: return { kind: "null" };
    case 2: return { kind: "int", bits: t.int32(0), signed: t.bool(1) };
    case 3: {
      const precision = t.int16(0);
      if (precision === 0) throw new Error("arrow: half floats are not supported");
      return { kind: "float", bits: precision === 1 ? 32 : 64 };
    }
    case 5: return { kind: "utf8" };
    case 6: return { kind: "bool" };
    case 10: return { kind: "timestamp", unit: UNITS[t.int16(0)], tz: t.string(1) };
    default:
      throw new Error(`arrow: column type ${TYPE_NAMES[typeId] || typeId} is not supported by this reader`);
  }
}

function readSchema(schema) {
  if (schema.int16(0) !== 0) throw new Error("arrow: big-endian streams are not supported");
  return schema.tables(1).map((f) => {
    if (f.table(4)) throw new Error(`arrow: dictionary-encoded column ${f.string(0)} is not supported`);
    const children = f.vector(5);
    if (children && children.length) throw new Error(`arrow: nested column ${f.string(0)} is not supported`);
    return { name: f.string(0), nullable: f.bool(1), type: readType(f) };
  });
}

// --- record batches -----------------------------------------------------------------------------
function aligned(body, offset, length, bytesPer) {
  // a typed array over body[offset, offset+length) - copied when misaligned for the element size
  const abs = body.byteOffset + offset;
  if (abs % bytesPer === 0) return { buffer: body.buffer, byteOffset: abs };
  const copy = new Uint8Array(length);
  copy.set(new Uint8Array(body.buffer, abs, length));
  return { buffer: copy.buffer, byteOffset: 0 };
}

function validity(body, buf, length, nullCount) {
  if (nullCount === 0 || buf.length === 0) return null;
  const bits = new Uint8Array(body.buffer, body.byteOffset + buf.offset, buf.length);
  return (i) => ((bits[i >> 3] >> (i & 7)) & 1) === 1;
}

function readColumn(field, node, buffers, body) {
  const n = node.length;
  const out = new Array(n);
  const { type } = field;
  if (type.kind === "null") {
    out.fill(null);
    return out;
  }
  const valid = validity(body, buffers.shift(), n, node.nullCount);
  if (type.kind === "bool") {
    const b = buffers.shift();
    const bits = new Uint8Array(body.buffer, body.byteOffset + b.offset, b.length);
    for (let i = 0; i < n; i++) out[i] = valid && !valid(i) ? null : ((bits[i >> 3] >> (i & 7)) & 1) === 1;
    return out;
  }
  if (type.kind === "utf8") {
    const offs = buffers.shift();
    const data = buffers.shift();
    const a = aligned(body, offs.offset, offs.length, 4);
    const o = new Int32Array(a.buffer, a.byteOffset, n + 1);
    const bytes = new Uint8Array(body.buffer, body.byteOffset + data.offset, data.length);
    for (let i = 0; i < n; i++) out[i] = valid && !valid(i) ? null : utf8.decode(bytes.subarray(o[i], o[i + 1]));
    return out;
  }
  const b = buffers.shift();
  const bits = type.kind === "timestamp" ? 64 : type.bits;
  const size = bits / 8;
  const a = aligned(body, b.offset, n * size, size);
  let values;
  if (type.kind === "float") values = bits === 32 ? new Float32Array(a.buffer, a.byteOffset, n) : new Float64Array(a.buffer, a.byteOffset, n);
  else if (bits === 64) values = type.kind === "timestamp" || type.signed ? new BigInt64Array(a.buffer, a.byteOffset, n) : new BigUint64Array(a.buffer, a.byteOffset, n);
  else if (bits === 32) values = type.signed ? new Int32Array(a.buffer, a.byteOffset, n) : new Uint32Array(a.buffer, a.byteOffset, n);
  else if (bits === 16) values = type.signed ? new Int16Array(a.buffer, a.byteOffset, n) : new Uint16Array(a.buffer, a.byteOffset, n);
  else if (bits === 8) values = type.signed ? new Int8Array(a.buffer, a.byteOffset, n) : new Uint8Array(a.buffer, a.byteOffset, n);
  else throw new Error(`arrow: ${bits}-bit integers are not supported`);
  const big = bits === 64 && type.kind !== "float";
  for (let i = 0; i < n; i++) {
    if (valid && !valid(i)) { out[i] = null; continue; }
    const v = values[i];
    out[i] = big ? (v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : v) : v;
  }
  return out;
}

function readBatch(batch, fields, body) {
  if (batch.table(3)) throw new Error("arrow: compressed record batches are not supported");
  const length = batch.int64(0);
  const nodesVec = batch.vector(1);
  const bufVec = batch.vector(2);
  const view = batch.view;
  const nodes = [];
  for (let i = 0; i < (nodesVec ? nodesVec.length : 0); i++) {
    const at = nodesVec.start + 16 * i;
    nodes.push({ length: Number(view.getBigInt64(at, true)), nullCount: Number(view.getBigInt64(at + 8, true)) });
  }
  const buffers = [];
  for (let i = 0; i < (bufVec ? bufVec.length : 0); i++) {
    const at = bufVec.start + 16 * i;
    buffers.push({ offset: Number(view.getBigInt64(at, true)), length: Number(view.getBigInt64(at + 8, true)) });
  }
  const columns = fields.map((f, i) => readColumn(f, nodes[i], buffers, body));
  return { length, columns };
}

// --- the stream ---------------------------------------------------------------------------------
export function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new Error(`arrow: expected bytes (ArrayBuffer, DataView or typed array), got ${typeof data}`);
}

export function decodeStream(data) {
  const bytes = toBytes(data);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let fields = null;
  const columns = [];
  let length = 0;
  while (pos + 4 <= bytes.byteLength) {
    let metaLength = view.getInt32(pos, true);
    pos += 4;
    if (metaLength === -1) {  // continuation marker (format >= 0.15)
      if (pos + 4 > bytes.byteLength) break;
      metaLength = view.getInt32(pos, true);
      pos += 4;
    }
    if (metaLength === 0) break;  // end of stream
    const meta = new DataView(bytes.buffer, bytes.byteOffset + pos, metaLength);
    pos += metaLength;
    const message = flatRoot(meta);
    const headerType = message.uint8(1);
    const header = message.table(2);
    const bodyLength = message.int64(3);
    const body = new Uint8Array(bytes.buffer, bytes.byteOffset + pos, bodyLength);
    pos += bodyLength;
    if (headerType === HEADER_SCHEMA) {
      fields = readSchema(header);
      fields.forEach(() => columns.push([]));
    } else if (headerType === HEADER_RECORD_BATCH) {
      if (!fields) throw new Error("arrow: record batch before the schema");
      const batch = readBatch(header, fields, body);
      length += batch.length;
      batch.columns.forEach((col, i) => {
        const target = columns[i];
        for (let k = 0; k < col.length; k++) target.push(col[k]);
      });
    } else if (headerType === HEADER_DICTIONARY) {
      throw new Error("arrow: dictionary batches are not supported");
    } else {
      throw new Error(`arrow: unexpected message type ${headerType}`);
    }
  }
  if (!fields) throw new Error("arrow: no schema message in the stream");
  const byName = {};
  fields.forEach((f, i) => { byName[f.name] = columns[i]; });
  return { fields, length, columns: byName };
}
