// Arrow IPC streams from the kernel -> plain columns for the views, decoded by @uwdata/flechette.
//
// decodeStream(bytes) -> { fields: [{name, nullable, type}], length, columns: {name: Array} }
// with the columns of all record batches concatenated. `type` describes what a view needs to show a
// value: {kind: "null" | "int" | "float" | "decimal" | "bool" | "utf8" | "json" | "date" |
// "timestamp" | "list", ...}. Values:
//   int       Number when exactly representable, else BigInt (64-bit integers never lose digits)
//   float     Number
//   decimal   an exact decimal: String(v) its shortest exact digits ("19.9", "-0.05", "3"; the same
//             whatever scale a batch had), +v / comparisons use its Number
//   bool      true / false
//   utf8      string
//   json      the JSON text, as the kernel wrote it (columns marked with the arrow.json extension)
//   date      ISO "YYYY-MM-DD" string
//   timestamp Number (BigInt past 2^53) in the column's unit since the epoch; type has unit and tz
//   list      Array of element values; String(v) is its JSON text ('["a","b"]', '[1,2]')
// Any other Arrow type is an Error that names it (the kernel never sends one).
import { tableFromIPC, Type } from "@uwdata/flechette";

const UNITS = ["s", "ms", "us", "ns"];
const OPTIONS = { useBigInt: true, useBigIntTimestamp: true, useDecimalInt: true };
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const TYPE_NAMES = Object.fromEntries(Object.entries(Type).map(([name, id]) => [id, name]));

// The bytes of a buffer, 8-byte aligned (flechette views Arrow buffers in place as typed arrays, which
// need their element alignment; a misaligned view, possible for a comm's DataView, is copied once).
export function toBytes(data) {
  let bytes;
  if (data instanceof Uint8Array) bytes = data;
  else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else throw new Error(`arrow: expected bytes (ArrayBuffer, DataView or typed array), got ${typeof data}`);
  return bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
}

// ------------------------------------------------------------------------------------ values
function int(v) {
  return typeof v === "bigint" && v <= MAX_SAFE && v >= -MAX_SAFE ? Number(v) : v;
}

class Decimal {
  constructor(unscaled, scale) {
    this.unscaled = unscaled;  // BigInt: the digits without the decimal point
    this.scale = scale;
  }

  toString() {
    if (this.scale <= 0) return (this.unscaled * 10n ** BigInt(-this.scale)).toString();
    const neg = this.unscaled < 0n;
    const digits = (neg ? -this.unscaled : this.unscaled).toString().padStart(this.scale + 1, "0");
    const cut = digits.length - this.scale;
    let frac = digits.slice(cut);
    let end = frac.length;
    while (end > 0 && frac.charCodeAt(end - 1) === 48) end -= 1;  // trailing zeros: "1.50" -> "1.5"
    frac = frac.slice(0, end);
    return `${neg ? "-" : ""}${digits.slice(0, cut)}${frac ? "." : ""}${frac}`;
  }

  valueOf() {
    return Number(this.toString());
  }

  toJSON() {
    return this.toString();
  }
}

// JSON text with 64-bit integers written exactly (JSON.stringify cannot write a BigInt itself)
const BIG = "\u0000big:";
const BIG_TEXT = /"\\u0000big:(-?\d+)"/g;  // JSON.stringify writes the NUL as the escape \u0000
function jsonText(value) {
  const text = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${BIG}${v}` : v));
  return text.includes(BIG.slice(1)) ? text.replace(BIG_TEXT, "$1") : text;
}

function listOf(values, convert) {
  const out = Array.from(values, (v) => (v === null || v === undefined ? null : convert(v)));
  Object.defineProperty(out, "toString", { value: () => jsonText(out), enumerable: false });
  return out;
}

function isoDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

// --------------------------------------------------------------------------------------- types
function describe(field) {
  const t = field.type;
  const ext = field.metadata ? field.metadata.get("ARROW:extension:name") : null;
  switch (t.typeId) {
    case Type.Null: return { kind: "null" };
    case Type.Int: return { kind: "int", bits: t.bitWidth, signed: t.signed };
    case Type.Float:
      if (!t.precision) throw new Error(`arrow: half float column ${field.name} is not supported`);
      return { kind: "float", bits: t.precision === 1 ? 32 : 64 };
    case Type.Decimal: return { kind: "decimal", precision: t.precision, scale: t.scale };
    case Type.Bool: return { kind: "bool" };
    case Type.Utf8:
    case Type.LargeUtf8:
    case Type.Utf8View:
      return ext === "arrow.json" ? { kind: "json" } : { kind: "utf8" };
    case Type.Date: return { kind: "date" };
    case Type.Timestamp: return { kind: "timestamp", unit: UNITS[t.unit], tz: t.timezone ?? null };
    case Type.List:
    case Type.LargeList:
      return { kind: "list", of: describe(t.children[0]) };
    case Type.Dictionary: return describe({ name: field.name, type: t.dictionary, metadata: field.metadata });
    default:
      throw new Error(`arrow: column ${field.name} has type ${TYPE_NAMES[t.typeId] || t.typeId}, which the widgets do not show`);
  }
}

function converter(type) {
  switch (type.kind) {
    case "int":
    case "timestamp":
      return int;
    case "decimal": {
      const { scale } = type;
      return (v) => new Decimal(BigInt(v), scale);
    }
    case "date": return isoDate;
    case "list": {
      const inner = converter(type.of) || ((v) => v);
      return (v) => listOf(v, inner);
    }
    default: return null;  // the decoded value as it is
  }
}

// ------------------------------------------------------------------------------------- streams
export function decodeStream(data) {
  const table = tableFromIPC(toBytes(data), OPTIONS);
  const fields = table.schema.fields.map((f) => ({ name: f.name, nullable: f.nullable, type: describe(f) }));
  const columns = {};
  fields.forEach((f, i) => {
    const values = table.getChildAt(i).toArray();
    const convert = converter(f.type);
    const out = new Array(values.length);
    for (let k = 0; k < values.length; k++) {
      const v = values[k];
      out[k] = v === null || v === undefined ? null : convert ? convert(v) : v;
    }
    columns[f.name] = out;
  });
  return { fields, length: table.numRows, columns };
}
