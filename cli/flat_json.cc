// SPDX-License-Identifier: Apache-2.0
#include "cli/flat_json.h"

#include <simdjson.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace physpool::cli {
namespace {

namespace od = simdjson::ondemand;

static_assert(FlatJsonReader::kPadding == simdjson::SIMDJSON_PADDING);

constexpr char kExpectedValue[] =
    "expected a string, an unsigned integer, true or false";

// Debian's abseil has its own string_view (not std::string_view's alias).
absl::string_view View(std::string_view s) { return {s.data(), s.size()}; }

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

absl::string_view TrimRight(absl::string_view s) {
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Why `token`, a number simdjson would not read as a uint64_t, is refused.
const char* NumberError(absl::string_view token) {
  if (!token.empty() && token[0] == '-')
    return "negative numbers are not allowed";
  if (token.find_first_of(".eE") != absl::string_view::npos)
    return "expected an integer (no fraction or exponent)";
  if (!token.empty() &&
      token.find_first_not_of("0123456789") == absl::string_view::npos) {
    return token.size() > 1 && token[0] == '0'
               ? "numbers may not have leading zeros"
               : "number above 2^64 - 1";
  }
  return "malformed number";
}

// Positions in the line being parsed, for the messages.
class Line {
 public:
  Line(const char* base, size_t size) : base_(base), size_(size) {}

  absl::Status Error(const char* at, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("column ", at - base_ + 1, ": ", what));
  }
  // An error simdjson found while indexing the line: it has no position.
  absl::Status IndexError(simdjson::error_code e) const {
    switch (e) {
      case simdjson::EMPTY:
        return Error(base_ + size_, "expected '{'");
      case simdjson::UNCLOSED_STRING:
        return absl::InvalidArgumentError("unterminated string");
      case simdjson::UTF8_ERROR:
        return absl::InvalidArgumentError("invalid UTF-8");
      case simdjson::UNESCAPED_CHARS:
        return absl::InvalidArgumentError("control character in string");
      default:
        return absl::InvalidArgumentError(simdjson::error_message(e));
    }
  }
  // The line is not one object: not an object at all, or (simdjson checks
  // that the last token closes the first) not ending with its '}'.
  absl::Status RootError(simdjson::error_code e, od::document& doc) const {
    if (e == simdjson::INCOMPLETE_ARRAY_OR_OBJECT) {
      const absl::string_view t = TrimRight(absl::string_view(base_, size_));
      return Error(base_ + (t.empty() ? 0 : t.size() - 1),
                   "expected '}' to end the line");
    }
    const char* at = nullptr;
    if (doc.current_location().get(at) != simdjson::SUCCESS) at = base_;
    if (e == simdjson::INCORRECT_TYPE) return Error(at, "expected '{'");
    return Error(at, simdjson::error_message(e));
  }
  // Between fields: `value_end` is where the last value's token ended
  // (simdjson's tokens run to the next structural character), or null.
  absl::Status StructureError(simdjson::error_code e, od::document& doc,
                              const char* value_end) const {
    const char* at = nullptr;
    if (doc.current_location().get(at) != simdjson::SUCCESS) {
      return absl::InvalidArgumentError(simdjson::error_message(e));
    }
    if (e != simdjson::TAPE_ERROR) return Error(at, simdjson::error_message(e));
    if (at == value_end) return Error(at, "expected ',' or '}'");
    const char* p = at;
    while (p > base_ && IsSpace(p[-1])) --p;
    if (p > base_ && (p[-1] == '{' || p[-1] == ','))
      return Error(at, "expected a key in double quotes");
    return Error(at, "expected ':'");
  }

 private:
  const char* base_;
  size_t size_;
};

}  // namespace

struct FlatJsonReader::Impl {
  od::parser parser;
  std::string padded;  // a copy of a line without padding after it
  std::vector<JsonField> fields;

  absl::Status Parse(const Line& line, od::document& doc);
};

FlatJsonReader::FlatJsonReader() : impl_(std::make_unique<Impl>()) {}
FlatJsonReader::~FlatJsonReader() = default;

absl::StatusOr<absl::Span<const JsonField>> FlatJsonReader::Parse(
    absl::string_view text, size_t readable) {
  Impl& m = *impl_;
  m.fields.clear();
  const char* base = text.data();
  if (readable < text.size() + kPadding) {
    m.padded.resize(text.size() + kPadding);
    if (!text.empty()) std::memcpy(m.padded.data(), text.data(), text.size());
    base = m.padded.data();
    readable = m.padded.size();
  }
  const Line line(base, text.size());
  od::document doc;
  if (auto e = m.parser.iterate(base, text.size(), readable).get(doc))
    return line.IndexError(e);
  if (absl::Status s = m.Parse(line, doc); !s.ok()) return s;
  return absl::Span<const JsonField>(m.fields);
}

absl::Status FlatJsonReader::Impl::Parse(const Line& line, od::document& doc) {
  od::object obj;
  if (auto e = doc.get_object().get(obj)) return line.RootError(e, doc);
  const char* value_end = nullptr;
  for (auto item : obj) {
    if (item.error()) return line.StructureError(item.error(), doc, value_end);
    od::raw_json_string raw_key;
    if (auto e = item.key().get(raw_key))
      return line.StructureError(e, doc, value_end);
    const char* key_at = reinterpret_cast<const char*>(raw_key.raw()) - 1;
    JsonField f;
    std::string_view key;
    if (item.unescaped_key().get(key))
      return line.Error(key_at, "bad escape or unpaired surrogate in string");
    f.key = View(key);
    for (const JsonField& other : fields) {
      if (other.key == f.key)
        return line.Error(key_at,
                          absl::StrCat("duplicate key \"", f.key, "\""));
    }
    od::value v;
    if (auto e = item.value().get(v))
      return line.StructureError(e, doc, value_end);
    const std::string_view token = v.raw_json_token();
    const char* at = token.data();
    value_end = token.data() + token.size();
    od::json_type type;
    if (v.type().get(type)) return line.Error(at, kExpectedValue);
    switch (type) {
      case od::json_type::string: {
        std::string_view s;
        if (v.get_string().get(s))
          return line.Error(at, "bad escape or unpaired surrogate in string");
        f.type = JsonField::Type::kString;
        f.str = View(s);
        break;
      }
      case od::json_type::number:
        if (v.get_uint64().get(f.uint))
          return line.Error(at, NumberError(TrimRight(View(token))));
        f.type = JsonField::Type::kUint;
        break;
      case od::json_type::boolean:
        if (v.get_bool().get(f.boolean)) return line.Error(at, kExpectedValue);
        f.type = JsonField::Type::kBool;
        break;
      case od::json_type::null: {
        bool null = false;
        if (v.is_null().get(null) || !null)
          return line.Error(at, kExpectedValue);
        return line.Error(at, "null is not allowed");
      }
      case od::json_type::object:
      case od::json_type::array:
        return line.Error(at, "nested objects and arrays are not allowed");
    }
    fields.push_back(f);
  }
  const char* after = nullptr;
  if (doc.current_location().get(after) == simdjson::SUCCESS)
    return line.Error(after, "unexpected characters after the object");
  return absl::OkStatus();
}

}  // namespace physpool::cli
