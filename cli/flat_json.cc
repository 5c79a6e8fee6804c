// SPDX-License-Identifier: Apache-2.0
#include "cli/flat_json.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace physpool::cli {
namespace {

class Parser {
 public:
  explicit Parser(absl::string_view t) : t_(t) {}

  absl::StatusOr<std::vector<JsonField>> Object() {
    std::vector<JsonField> fields;
    Space();
    if (!Eat('{')) return Error("expected '{'");
    Space();
    if (Eat('}')) return Finish(std::move(fields));
    for (;;) {
      Space();
      JsonField f;
      if (Peek() != '"') return Error("expected a key in double quotes");
      if (auto s = String(&f.key); !s.ok()) return s;
      for (const JsonField& other : fields) {
        if (other.key == f.key)
          return Error(absl::StrCat("duplicate key \"", f.key, "\""));
      }
      Space();
      if (!Eat(':')) return Error("expected ':'");
      Space();
      if (auto s = Value(&f); !s.ok()) return s;
      fields.push_back(std::move(f));
      Space();
      if (Eat('}')) return Finish(std::move(fields));
      if (!Eat(',')) return Error("expected ',' or '}'");
    }
  }

 private:
  absl::StatusOr<std::vector<JsonField>> Finish(std::vector<JsonField> fields) {
    Space();
    if (i_ != t_.size()) return Error("unexpected characters after the object");
    return fields;
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("column ", i_ + 1, ": ", what));
  }
  char Peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  bool Eat(char c) {
    if (Peek() != c || i_ >= t_.size()) return false;
    ++i_;
    return true;
  }
  void Space() {
    while (i_ < t_.size() &&
           (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\r'))
      ++i_;
  }
  bool Word(absl::string_view w) {
    if (t_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }

  absl::Status Value(JsonField* f) {
    const char c = Peek();
    if (c == '"') {
      f->type = JsonField::Type::kString;
      return String(&f->str);
    }
    if (c >= '0' && c <= '9') {
      f->type = JsonField::Type::kUint;
      return Uint(&f->uint);
    }
    if (Word("true") || Word("false")) {
      f->type = JsonField::Type::kBool;
      f->boolean = t_[i_ - 1] == 'e' && t_[i_ - 4] == 't';  // "true"
      return absl::OkStatus();
    }
    if (c == '-') return Error("negative numbers are not allowed");
    if (c == '{' || c == '[')
      return Error("nested objects and arrays are not allowed");
    if (Word("null")) return Error("null is not allowed");
    return Error("expected a string, an unsigned integer, true or false");
  }

  absl::Status Uint(uint64_t* out) {
    const size_t start = i_;
    uint64_t v = 0;
    while (Peek() >= '0' && Peek() <= '9') {
      const uint64_t d = static_cast<uint64_t>(t_[i_] - '0');
      if (v > (~uint64_t{0} - d) / 10) return Error("number above 2^64 - 1");
      v = v * 10 + d;
      ++i_;
    }
    if (i_ - start > 1 && t_[start] == '0') {
      i_ = start;
      return Error("numbers may not have leading zeros");
    }
    if (Peek() == '.' || Peek() == 'e' || Peek() == 'E') {
      return Error("expected an integer (no fraction or exponent)");
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status Hex4(uint32_t* out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = Peek();
      uint32_t d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else
        return Error("bad \\u escape");
      v = v * 16 + d;
      ++i_;
    }
    *out = v;
    return absl::OkStatus();
  }

  static void Utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  absl::Status String(std::string* out) {
    ++i_;  // opening quote
    for (;;) {
      if (i_ >= t_.size()) return Error("unterminated string");
      const char c = t_[i_++];
      if (c == '"') return absl::OkStatus();
      if (static_cast<unsigned char>(c) < 0x20) {
        --i_;
        return Error("control character in string");
      }
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      const char e = Peek();
      ++i_;
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (auto s = Hex4(&cp); !s.ok()) return s;
          if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t lo = 0;
            if (!Word("\\u")) return Error("unpaired surrogate");
            if (auto s = Hex4(&lo); !s.ok()) return s;
            if (lo < 0xDC00 || lo >= 0xE000) return Error("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return Error("unpaired surrogate");
          }
          Utf8(cp, out);
          break;
        }
        default:
          --i_;
          return Error("bad escape in string");
      }
    }
  }

  absl::string_view t_;
  size_t i_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<JsonField>> ParseFlatObject(absl::string_view text) {
  return Parser(text).Object();
}

void AppendJsonString(absl::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 0xF]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace physpool::cli
