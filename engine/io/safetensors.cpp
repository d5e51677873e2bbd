// engine/io/safetensors.cpp: the safetensors writer and a loader that checks every rule.
#include "engine/io/safetensors.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; this code copies host bytes as they are");

namespace ddpm {

namespace {

using ordered_json = nlohmann::ordered_json;

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the limit the reference reader uses

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
  }
  return "?";
}

// Element size of every dtype the format defines (0 when `name` is not one of them), and
// whether this engine can hold it.
std::size_t spec_dtype_size(const std::string& name) {
  static const std::map<std::string, std::size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
  auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

bool engine_dtype(const std::string& name, DType& out) {
  if (name == "F32") out = DType::f32;
  else if (name == "F64") out = DType::f64;
  else if (name == "F16") out = DType::f16;
  else if (name == "BF16") out = DType::bf16;
  else return false;
  return true;
}

std::uint32_t crc32_of(std::uint32_t crc, const void* data, std::size_t n) {
  const Bytef* p = static_cast<const Bytef*>(data);
  while (n > 0) {  // zlib takes a 32-bit length
    uInt chunk = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    crc = static_cast<std::uint32_t>(::crc32(crc, p, chunk));
    p += chunk;
    n -= chunk;
  }
  return crc;
}

std::string hex8(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// One parsed tensor entry of the header.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

}  // namespace

std::string safetensors_header_bytes(const std::string& json_text) {
  std::string header = json_text;
  header.append((8 - header.size() % 8) % 8, ' ');
  std::uint64_t n = header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header;
}

// --- save -------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Host copies first, so a failing device copy happens before anything touches the disk.
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    DDPM_CHECK(!name.empty() && name != "__metadata__",
               "save_safetensors('" << path << "'): invalid tensor name '" << name << "'");
    DDPM_CHECK(seen.insert(name).second, "save_safetensors('" << path << "'): the name '" << name << "' appears twice");
    DDPM_CHECK(t.defined(), "save_safetensors('" << path << "'): tensor '" << name << "' is undefined");
    host.push_back(t.cpu());
  }

  std::uint32_t crc = crc32_of(0, nullptr, 0);
  for (const Tensor& h : host) crc = crc32_of(crc, h.raw_data(), h.nbytes());

  ordered_json header = ordered_json::object();
  ordered_json meta = ordered_json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  meta[kSafetensorsCrcKey] = hex8(crc);
  header["__metadata__"] = meta;
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < host.size(); ++i) {
    std::uint64_t n = host[i].nbytes();
    header[tensors[i].first] = {{"dtype", safetensors_dtype(host[i].dtype())},
                                {"shape", host[i].shape()},
                                {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string json_text;
  try {
    json_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(ValueError, "save_safetensors('" << path << "'): a tensor name or metadata entry is not valid UTF-8 ("
                                                << e.what() << ")");
  }
  std::string head = safetensors_header_bytes(json_text);

  AtomicFileWriter w(path);
  w.write(head.data(), head.size());
  for (const Tensor& h : host) w.write(h.raw_data(), h.nbytes());
  w.commit();
}

// --- load -------------------------------------------------------------------------------

const Tensor& SafetensorsFile::get(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  DDPM_THROW(IoError, "safetensors file '" << path << "' has no tensor named '" << name << "'");
}

bool SafetensorsFile::contains(const std::string& name) const {
  for (const auto& kv : tensors)
    if (kv.first == name) return true;
  return false;
}

// The reader behind load_safetensors and load_safetensors_metadata. With metadata_only it
// stops after the header: its length, JSON and __metadata__ checked, the tensor entries and
// the data (and so the CRC) not read.
static SafetensorsFile read_safetensors(const std::string& path, bool metadata_only) {
#define BAD(msg) DDPM_THROW(IoError, "safetensors file '" << path << "' is malformed: " << msg)
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  DDPM_CHECK_AS(file, IoError, "cannot open safetensors file '" << path << "': " << std::strerror(errno));
  struct stat st;
  DDPM_CHECK_AS(::fstat(::fileno(file.get()), &st) == 0 && S_ISREG(st.st_mode), IoError,
                "cannot read safetensors file '" << path << "': not a regular file");
  const std::uint64_t file_size = static_cast<std::uint64_t>(st.st_size);
  auto read_exact = [&](void* dst, std::size_t n, const char* what) {
    if (n > 0 && std::fread(dst, 1, n, file.get()) != n)
      DDPM_THROW(IoError, "could not read " << what << " of safetensors file '" << path
                                            << "' (the file may have changed while reading)");
  };

  // 1. The header length.
  if (file_size < 8)
    BAD("the file is " << file_size << " bytes long, shorter than the 8-byte header length it must start with");
  unsigned char len_bytes[8];
  read_exact(len_bytes, 8, "the header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes)
    BAD("the header length is " << header_len << " bytes, more than the " << kMaxHeaderBytes
                                << "-byte limit (this is probably not a safetensors file)");
  if (header_len > file_size - 8)
    BAD("the header length is " << header_len << " bytes but only " << (file_size - 8)
                                << " bytes follow it (the file is truncated)");
  const std::uint64_t data_size = file_size - 8 - header_len;

  // 2. The header JSON. Duplicate top-level names are caught while parsing: a JSON parser
  // keeps only one of them.
  std::string text(header_len, '\0');
  read_exact(text.data(), text.size(), "the header");
  std::string duplicate;
  std::set<std::string> seen_names;
  ordered_json header;
  try {
    header = ordered_json::parse(text, [&](int depth, ordered_json::parse_event_t event, ordered_json& parsed) {
      if (event == ordered_json::parse_event_t::key && depth == 1 && parsed.is_string() && duplicate.empty()) {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!seen_names.insert(k).second) duplicate = k;
      }
      return true;
    });
  } catch (const nlohmann::json::exception& e) {
    BAD("the header is not valid JSON (" << e.what() << ")");
  }
  if (!duplicate.empty()) BAD("the name '" << duplicate << "' appears twice in the header");
  if (!header.is_object()) BAD("the header is JSON but not an object (found " << header.type_name() << ")");

  // 3. Metadata and tensor entries.
  SafetensorsFile out;
  out.path = path;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) BAD("__metadata__ must be an object of strings, found " << value.type_name());
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) BAD("__metadata__ entry '" << k << "' must be a string, found " << v.type_name());
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (metadata_only) continue;
    if (!value.is_object()) BAD("the entry for tensor '" << name << "' must be an object, found " << value.type_name());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) BAD("tensor '" << name << "' has no \"" << field << "\" field");
    const auto& jd = value["dtype"];
    const auto& js = value["shape"];
    const auto& jo = value["data_offsets"];
    if (!jd.is_string()) BAD("tensor '" << name << "': \"dtype\" must be a string, found " << jd.type_name());
    if (!js.is_array()) BAD("tensor '" << name << "': \"shape\" must be an array, found " << js.type_name());
    if (!jo.is_array() || jo.size() != 2)
      BAD("tensor '" << name << "': \"data_offsets\" must be an array of two integers, found " << jo.dump());
    Entry e;
    e.name = name;
    std::string dt = jd.get<std::string>();
    std::size_t esize = spec_dtype_size(dt);
    if (esize == 0) BAD("tensor '" << name << "' has unknown dtype '" << dt << "'");
    if (!engine_dtype(dt, e.dtype))
      BAD("tensor '" << name << "' has dtype " << dt << ", which this engine does not support (F32, F64, F16, BF16)");
    // numel is checked against the data size as it grows, so it cannot overflow.
    std::uint64_t numel = 1;
    bool huge = false;
    for (const auto& d : js) {
      if (!d.is_number_integer()) BAD("tensor '" << name << "': shape " << js.dump() << " holds a non-integer");
      if (!d.is_number_unsigned() && d.get<std::int64_t>() < 0)
        BAD("tensor '" << name << "': shape " << js.dump() << " has a negative dimension");
      std::uint64_t dim = d.get<std::uint64_t>();
      e.shape.push_back(static_cast<std::int64_t>(dim));
      if (dim != 0 && numel > (data_size + 1) / dim) huge = true;
      numel *= dim;
    }
    for (const auto& o : jo)
      if (!o.is_number_integer() || (!o.is_number_unsigned() && o.get<std::int64_t>() < 0))
        BAD("tensor '" << name << "': \"data_offsets\" " << jo.dump() << " must be two non-negative integers");
    e.begin = jo[0].get<std::uint64_t>();
    e.end = jo[1].get<std::uint64_t>();
    if (e.end < e.begin) BAD("tensor '" << name << "': data_offsets " << jo.dump() << " end before they begin");
    if (e.end > data_size)
      BAD("tensor '" << name << "': data_offsets " << jo.dump() << " go past the end of the file (the data buffer has "
                     << data_size << " bytes)");
    if (huge || numel * esize != e.end - e.begin)
      BAD("tensor '" << name << "' has shape " << shape_str(e.shape) << " of " << dt << " ("
                     << (huge ? std::string("more than the file holds") : std::to_string(numel * esize) + " bytes")
                     << ") but data_offsets " << jo.dump() << " span " << (e.end - e.begin) << " bytes");
    entries.push_back(std::move(e));
  }
  if (metadata_only) return out;

  // 4. The tensors must tile the data buffer: no gap, no overlap, nothing left over.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  std::uint64_t expected = 0;
  std::string previous = "the start of the data buffer";
  for (const Entry& e : entries) {
    if (e.begin > expected)
      BAD("there is a gap of " << (e.begin - expected) << " bytes between " << previous << " and tensor '" << e.name
                               << "' (data offsets must be contiguous)");
    if (e.begin < expected)
      BAD("tensor '" << e.name << "' (bytes " << e.begin << ".." << e.end << ") overlaps " << previous);
    expected = e.end;
    previous = "tensor '" + e.name + "'";
  }
  if (expected != data_size)
    BAD("the data buffer has " << (data_size - expected) << " trailing bytes after the last tensor (it holds "
                               << data_size << " bytes, the tensors use " << expected << ")");

  // 5. The data, in file order, and its checksum.
  std::uint32_t crc = crc32_of(0, nullptr, 0);
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    read_exact(t.raw_data(), t.nbytes(), ("tensor '" + e.name + "'").c_str());
    crc = crc32_of(crc, t.raw_data(), t.nbytes());
    out.tensors.emplace_back(e.name, std::move(t));
  }
  auto it = out.metadata.find(kSafetensorsCrcKey);
  if (it != out.metadata.end()) {
    if (it->second != hex8(crc))
      DDPM_THROW(IoError, "safetensors file '" << path << "' is corrupt: its data has CRC-32 " << hex8(crc)
                                               << " but the header records " << it->second);
  }
  return out;
#undef BAD
}

SafetensorsFile load_safetensors(const std::string& path) { return read_safetensors(path, false); }

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  return read_safetensors(path, true).metadata;
}

}  // namespace ddpm
