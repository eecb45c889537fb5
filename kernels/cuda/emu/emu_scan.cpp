/* Tokenizer-based scanning of CUDA sources for the emulation build; see emu_scan.h.
 * The tokenizer knows comments, string/char literals and preprocessor lines (left alone),
 * which is all a declaration-level rewrite needs; it is not a C++ parser. */
#include "kernels/cuda/emu/emu_scan.h"

#include <cctype>
#include <cstring>

namespace {

enum { T_ID, T_NUM, T_STR, T_PUNCT };
struct Tok {
  int kind;
  size_t b, e;
  int line;
};

std::vector<Tok> lex(const std::string &s) {
  std::vector<Tok> t;
  size_t i = 0, n = s.size();
  int line = 1;
  bool bol = true; /* only whitespace since the start of the line */
  while (i < n) {
    char c = s[i];
    if (c == '\n') { line++; i++; bol = true; continue; }
    if (isspace((unsigned char)c)) { i++; continue; }
    if (c == '#' && bol) { /* preprocessor line, with continuations */
      while (i < n && s[i] != '\n') {
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\n') { line++; i += 2; continue; }
        if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') { /* comment inside a directive */
          i += 2;
          while (i + 1 < n && !(s[i] == '*' && s[i + 1] == '/')) { line += s[i] == '\n'; i++; }
          i += 2;
          continue;
        }
        i++;
      }
      continue;
    }
    bol = false;
    if (c == '/' && i + 1 < n && s[i + 1] == '/') {
      while (i < n && s[i] != '\n') i++;
      continue;
    }
    if (c == '/' && i + 1 < n && s[i + 1] == '*') {
      i += 2;
      while (i + 1 < n && !(s[i] == '*' && s[i + 1] == '/')) { line += s[i] == '\n'; i++; }
      i += 2;
      continue;
    }
    Tok k{T_PUNCT, i, i + 1, line};
    if (c == 'R' && i + 1 < n && s[i + 1] == '"') { /* raw string R"delim( ... )delim" */
      size_t p = s.find('(', i);
      std::string close = ")" + s.substr(i + 2, p - i - 2) + "\"";
      size_t q = s.find(close, p);
      q = q == std::string::npos ? n : q + close.size();
      for (size_t j = i; j < q; j++) line += s[j] == '\n';
      t.push_back({T_STR, i, q, k.line});
      i = q;
      continue;
    }
    if (isalpha((unsigned char)c) || c == '_') {
      size_t j = i;
      while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_')) j++;
      if (j < n && (s[j] == '"' || s[j] == '\'') && j - i <= 2) { /* u8"..", L'x' */
        i = j;
        continue; /* the literal itself is lexed next */
      }
      k = {T_ID, i, j, line};
      i = j;
    } else if (isdigit((unsigned char)c) || (c == '.' && i + 1 < n && isdigit((unsigned char)s[i + 1]))) {
      size_t j = i;
      while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_' || s[j] == '.' || s[j] == '\'' ||
                       ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E' ||
                                                         s[j - 1] == 'p' || s[j - 1] == 'P'))))
        j++;
      k = {T_NUM, i, j, line};
      i = j;
    } else if (c == '"' || c == '\'') {
      size_t j = i + 1;
      while (j < n && s[j] != c && s[j] != '\n') j += s[j] == '\\' ? 2 : 1;
      k = {T_STR, i, j + 1, line};
      i = j + 1;
    } else if (c == ':' && i + 1 < n && s[i + 1] == ':') {
      k.e = i + 2;
      i += 2;
    } else {
      i++;
    }
    t.push_back(k);
  }
  return t;
}

struct Src {
  const std::string &s;
  std::vector<Tok> t;
  std::string txt(size_t i) const { return s.substr(t[i].b, t[i].e - t[i].b); }
  bool is(size_t i, const char *w) const {
    size_t l = strlen(w);
    return i < t.size() && t[i].e - t[i].b == l && s.compare(t[i].b, l, w) == 0;
  }
  /* text of tokens [a, b) joined by single spaces */
  std::string join(size_t a, size_t b) const {
    std::string r;
    for (size_t i = a; i < b; i++) {
      if (!r.empty()) r += ' ';
      r += txt(i);
    }
    return r;
  }
  /* index of the token closing the bracket opened at i */
  size_t match(size_t i) const {
    int d = 0;
    for (size_t j = i; j < t.size(); j++) {
      if (is(j, "(") || is(j, "[") || is(j, "{")) d++;
      if (is(j, ")") || is(j, "]") || is(j, "}")) {
        if (--d == 0) return j;
      }
    }
    return t.size();
  }
};

/* For each token: true when the innermost enclosing brace is a namespace, extern "C" or
 * the file itself (a declaration there is at namespace scope). */
std::vector<bool> namespace_scope(const Src &S) {
  std::vector<bool> ns(S.t.size(), true);
  std::vector<bool> stack;
  for (size_t i = 0; i < S.t.size(); i++) {
    ns[i] = stack.empty() || stack.back();
    if (S.is(i, "{")) {
      bool is_ns = false;
      size_t j = i;
      if (j >= 1 && S.t[j - 1].kind == T_STR && j >= 2 && S.is(j - 2, "extern")) is_ns = true;
      while (j > 0 && (S.t[j - 1].kind == T_ID || S.is(j - 1, "::"))) {
        j--;
        if (S.is(j, "namespace")) { is_ns = true; break; }
      }
      stack.push_back(is_ns);
    } else if (S.is(i, "}") && !stack.empty()) {
      stack.pop_back();
    }
  }
  return ns;
}

}  // namespace

bool mf_emu_rewrite(const std::string &src, const std::string &path, std::string *out,
                    std::string *err) {
  Src S{src, lex(src)};
  std::vector<bool> ns = namespace_scope(S);
  std::string r;
  size_t copied = 0; /* bytes of src already emitted */
  for (size_t i = 0; i < S.t.size(); i++) {
    if (!S.is(i, "__shared__")) continue;
    /* statement bounds */
    size_t a = i;
    while (a > 0 && !S.is(a - 1, ";") && !S.is(a - 1, "{") && !S.is(a - 1, "}") &&
           !S.is(a - 1, ":")) {
      if (S.is(a - 1, ")")) { /* only __align__(N) / alignas(N) may precede __shared__ */
        size_t o = a - 1;
        int d = 0;
        for (;; o--) {
          d += S.is(o, ")") - S.is(o, "(");
          if (d == 0 || o == 0) break;
        }
        if (o == 0 || !(S.is(o - 1, "__align__") || S.is(o - 1, "alignas"))) break;
        a = o - 1;
        continue;
      }
      a--;
    }
    size_t e = i;
    int depth = 0;
    while (e < S.t.size() && !(depth == 0 && S.is(e, ";"))) {
      if (S.is(e, "(") || S.is(e, "[") || S.is(e, "{")) depth++;
      if (S.is(e, ")") || S.is(e, "]") || S.is(e, "}")) depth--;
      e++;
    }
    char where[64];
    snprintf(where, sizeof where, ":%d: error: ", S.t[i].line);
    if (e >= S.t.size() || S.t[a].b < copied) {
      *err = path + where + "cannot parse this __shared__ declaration";
      return false;
    }
    if (ns[a]) {
      *err = path + where +
             "__shared__ at file scope is not supported by the CUDA emulator; declare it "
             "inside the kernel or device function";
      return false;
    }
    bool ext = false;
    std::string align;
    std::vector<size_t> keep; /* decl tokens without storage/alignment specifiers */
    for (size_t j = a; j < e; j++) {
      if (S.is(j, "extern")) { ext = true; continue; }
      if (S.is(j, "static") || S.is(j, "__shared__")) continue;
      if ((S.is(j, "__align__") || S.is(j, "alignas")) && S.is(j + 1, "(")) {
        size_t c = S.match(j + 1);
        align = S.join(j + 2, c);
        j = c;
        continue;
      }
      if (S.is(j, "=") || S.is(j, "{")) {
        *err = path + where + "__shared__ variables cannot have initializers";
        return false;
      }
      keep.push_back(j);
    }
    /* split declarators at top-level commas (angle brackets count as nesting here) */
    std::vector<std::vector<size_t>> parts(1);
    depth = 0;
    for (size_t j : keep) {
      if (S.is(j, "(") || S.is(j, "[") || S.is(j, "<")) depth++;
      if (S.is(j, ")") || S.is(j, "]") || S.is(j, ">")) depth--;
      if (depth == 0 && S.is(j, ",")) { parts.emplace_back(); continue; }
      parts.back().push_back(j);
    }
    /* first part: type specifiers, then [ptr-ops] name [dims] */
    std::vector<size_t> &p0 = parts[0];
    size_t dim0 = p0.size();
    for (size_t k = 0; k < p0.size(); k++) {
      if (S.is(p0[k], "[")) { dim0 = k; break; }
    }
    if (dim0 == 0 || S.t[p0[dim0 - 1]].kind != T_ID) {
      *err = path + where + "cannot find the variable name in this __shared__ declaration";
      return false;
    }
    size_t spec_end = dim0 - 1; /* the name */
    for (size_t k = 0; k + 1 < dim0; k++) {
      if (S.is(p0[k], "*")) { spec_end = k; break; }
    }
    auto text = [&](const std::vector<size_t> &v, size_t x, size_t y) {
      std::string s;
      for (size_t k = x; k < y; k++) s += (s.empty() ? "" : " ") + S.txt(v[k]);
      return s;
    };
    std::string spec = text(p0, 0, spec_end);
    if (spec.empty()) {
      *err = path + where + "cannot find the type in this __shared__ declaration";
      return false;
    }
    std::string rep;
    for (size_t pi = 0; pi < parts.size(); pi++) {
      std::vector<size_t> d(parts[pi].begin() + (pi == 0 ? spec_end : 0), parts[pi].end());
      size_t nd = d.size();
      for (size_t k = 0; k < d.size(); k++) {
        if (S.is(d[k], "[")) { nd = k; break; }
      }
      if (nd == 0 || S.t[d[nd - 1]].kind != T_ID) {
        *err = path + where + "cannot parse a declarator of this __shared__ declaration";
        return false;
      }
      std::string name = S.txt(d[nd - 1]);
      std::string type = spec + (nd > 1 ? " " + text(d, 0, nd - 1) : "");
      std::string dims = text(d, nd, d.size());
      if (ext) {
        if (dims.compare(0, 3, "[ ]") != 0) {
          *err = path + where + "extern __shared__ must be an array of unknown size (x[])";
          return false;
        }
        std::string rest = dims.substr(3);
        if (rest.empty())
          rep += type + " *const " + name + " = (" + type + " *)::mf_emu::dyn_smem(); ";
        else
          rep += type + " (*const " + name + ")" + rest + " = (" + type + " (*)" + rest +
                 ")::mf_emu::dyn_smem(); ";
      } else {
        std::string al = "alignof(" + type + ")";
        if (!align.empty()) al = "((" + align + ") > " + al + " ? (" + align + ") : " + al + ")";
        if (dims.empty())
          rep += type + " &" + name + " = *reinterpret_cast<" + type + " *>(MF_EMU_SMEM_SITE(sizeof(" +
                 type + "), " + al + ")); ";
        else
          rep += type + " (&" + name + ")" + dims + " = *reinterpret_cast<" + type + " (*)" + dims +
                 ">(MF_EMU_SMEM_SITE(sizeof(" + type + " " + dims + "), " + al + ")); ";
      }
    }
    /* emit: untouched text before the statement, the replacement, the same number of lines */
    r.append(src, copied, S.t[a].b - copied);
    r += rep;
    for (size_t j = S.t[a].b; j < S.t[e].e; j++)
      if (src[j] == '\n') r += '\n';
    copied = S.t[e].e;
    i = e;
  }
  r.append(src, copied, std::string::npos);
  *out = r;
  return true;
}

std::vector<mf_emu_kernel_def> mf_emu_list_kernels(const std::string &src) {
  Src S{src, lex(src)};
  std::vector<mf_emu_kernel_def> ks;
  for (size_t i = 0; i < S.t.size(); i++) {
    if (!S.is(i, "__global__")) continue;
    for (size_t j = i + 1; j < S.t.size() && !S.is(j, ";") && !S.is(j, "{"); j++) {
      if (S.is(j, "__launch_bounds__") || S.is(j, "__attribute__") || S.is(j, "alignas") ||
          S.is(j, "__declspec") || S.is(j, "decltype")) {
        if (S.is(j + 1, "(")) j = S.match(j + 1);
        continue;
      }
      if (S.is(j, "(") && S.t[j - 1].kind == T_ID) {
        /* NAME(...) followed by another identifier is an attribute-like macro
         * (e.g. MF_LAUNCH_BOUNDS(256) kernel(...)), not the declarator */
        size_t c = S.match(j);
        if (c + 1 < S.t.size() && S.t[c + 1].kind == T_ID && !S.is(c + 1, "const") &&
            !S.is(c + 1, "noexcept") && !S.is(c + 1, "throw")) {
          j = c;
          continue;
        }
        std::string name = S.txt(j - 1);
        bool seen = false;
        for (auto &k : ks) seen |= k.name == name;
        if (!seen) ks.push_back({name, S.t[j - 1].line});
        break;
      }
    }
  }
  return ks;
}
