#include "core/snap/marker_scan.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <utility>

namespace snapfs {

namespace {

// Linux's PATH_MAX (with the NUL): a longer string names no file. Bounds the work and the
// memory one candidate costs.
constexpr size_t kMaxPath = 4096;
// The longest raw text worth decoding: a file://localhost URI with every byte escaped.
constexpr size_t kMaxRefText = 3 * kMaxPath + 16;

// Bytes that may appear inside a writeUTF string we care about. Modified UTF-8 has no
// 0x00; file names and URIs have no other control characters either.
bool IsTextByte(unsigned char c) { return c >= 0x20 && c != 0x7f; }

// Bytes of text files: text bytes and the whitespace between lines and fields.
bool IsTextLike(unsigned char c) { return IsTextByte(c) || c == '\t' || c == '\n' || c == '\r'; }

// Bytes that end a path inside a text run (JSON, properties, logs).
bool EndsTextPath(unsigned char c) {
  return !IsTextByte(c) || c == ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '|' ||
         c == ',' || c == ';' || c == '`' || c == '\\' || c == '{' || c == '}' || c == '[' ||
         c == ']' || c == '(' || c == ')';
}

// Bytes that may stand right before a path in a text run: those that end one, and the
// '=' of properties files (key=/mnt/ckpt/...). A path character there ('/', a letter)
// makes the occurrence the tail of a longer path (hdfs://host/mnt/...), which is no
// reference.
bool StartsTextPath(unsigned char c) { return EndsTextPath(c) || c == '='; }

// A candidate whose two length bytes are themselves text, inside a run of text (at the
// start of the marker or right after a text byte), is two characters of that text, not a
// writeUTF length. Such "lengths" are at least 0x0909 = 2313, so real writeUTF strings
// of that form are rare; treating the text as strings would make up references out of
// the rest of the run, and rewriting their "length" would corrupt a text marker.
bool InsideTextRun(std::string_view marker, const MarkerString& s) {
  auto at = [&](size_t i) { return static_cast<unsigned char>(marker[i]); };
  return IsTextLike(at(s.offset)) && IsTextLike(at(s.offset + 1)) &&
         (s.offset == 0 || IsTextLike(at(s.offset - 1)));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "/a//b/./c/../d" -> {"a","b","d"}; false if ".." climbs above the root.
bool SplitNormalised(std::string_view path, std::vector<std::string_view>* parts) {
  parts->clear();
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view part = path.substr(i, j - i);
    if (part == "..") {
      if (parts->empty()) return false;
      parts->pop_back();
    } else if (!part.empty() && part != ".") {
      parts->push_back(part);
    }
    i = j + 1;
  }
  return true;
}

// The absolute path a reference names: "/p" as is, "file:" URIs decoded; "" if neither,
// or if it is too long to be a path.
std::string AbsolutePathOf(std::string_view ref) {
  if (ref.size() > kMaxRefText) return "";
  if (ref.starts_with("/")) return ref.size() < kMaxPath ? std::string(ref) : "";
  if (!ref.starts_with("file:")) return "";
  std::string_view rest = ref.substr(5);
  if (rest.starts_with("//")) {
    rest.remove_prefix(2);  // authority: empty or localhost only
    if (rest.starts_with("localhost/")) rest.remove_prefix(9);
    if (!rest.starts_with("/")) return "";
  }
  if (!rest.starts_with("/")) return "";
  std::string out;
  out.reserve(rest.size());
  for (size_t i = 0; i < rest.size(); i++) {
    if (rest[i] == '%' && i + 2 < rest.size()) {
      int hi = HexValue(rest[i + 1]), lo = HexValue(rest[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(rest[i]);
  }
  // A decoded NUL would truncate the path anywhere else: not a reference.
  if (out.find('\0') != std::string::npos || out.size() >= kMaxPath) return "";
  return out;
}

}  // namespace

std::vector<MarkerString> FindUtfStrings(std::string_view marker, size_t min_length) {
  std::vector<MarkerString> out;
  const size_t n = marker.size();
  const size_t min_len = std::max<size_t>(min_length, 1);
  // run_end: the first non-text position at or after i + 2, once run_end >= i + 2. It only
  // moves forward, so the whole loop reads each byte a bounded number of times.
  size_t run_end = 0;
  for (size_t i = 0; i + 2 < n; i++) {
    size_t len = (static_cast<size_t>(static_cast<unsigned char>(marker[i])) << 8) |
                 static_cast<unsigned char>(marker[i + 1]);
    if (len < min_len || len > n - i - 2) continue;
    if (run_end < i + 2) {
      run_end = i + 2;
      while (run_end < n && IsTextByte(static_cast<unsigned char>(marker[run_end]))) run_end++;
    }
    if (run_end >= i + 2 + len) out.push_back(MarkerString{i, len});
  }
  return out;
}

std::string ResolveInMount(std::string_view ref, const std::vector<std::string>& mount_points) {
  std::string abs = AbsolutePathOf(ref);
  if (abs.empty()) return "";
  std::vector<std::string_view> parts, mparts;
  if (!SplitNormalised(abs, &parts)) return "";
  for (const auto& m : mount_points) {
    if (!SplitNormalised(m, &mparts) || mparts.size() >= parts.size()) continue;
    if (!std::equal(mparts.begin(), mparts.end(), parts.begin())) continue;
    std::string rel;
    for (size_t i = mparts.size(); i < parts.size(); i++) {
      if (!rel.empty()) rel.push_back('/');
      rel.append(parts[i]);
    }
    return rel;
  }
  return "";
}

std::vector<MarkerOccurrence> FindMarkerOccurrences(std::string_view marker,
                                                    const std::vector<std::string>& mount_points) {
  std::vector<MarkerOccurrence> found;
  // Text of the writeUTF strings that are in-mount references, in offset order: a mount
  // point inside one of them is part of that reference, not a text-run reference.
  std::vector<std::pair<size_t, size_t>> utf_refs;
  for (const MarkerString& s : FindUtfStrings(marker)) {
    if (InsideTextRun(marker, s)) continue;
    std::string_view text = s.text(marker);
    if (text.starts_with("/") || text.starts_with("file:")) {
      std::string rel = ResolveInMount(text, mount_points);
      if (!rel.empty()) {
        found.push_back(
            {s.offset + 2, s.length, true, {MarkerReference::kInMount, std::move(rel)}});
        utf_refs.emplace_back(s.offset + 2, s.offset + 2 + s.length);
      }
    } else if (text.size() <= kMaxBareName && text.find('/') == std::string_view::npos &&
               text != "." && text != "..") {
      found.push_back(
          {s.offset + 2, s.length, true, {MarkerReference::kBareName, std::string(text)}});
    }
  }
  // Text runs: an occurrence of a mount point, optionally behind a file: scheme, that
  // starts a path (not the tail of some longer path such as hdfs://host/mnt/...). The
  // path runs to the next byte that ends one; one path gives at most one reference per
  // mount point, so the pass is linear in the marker size.
  for (const auto& m : mount_points) {
    if (m.empty() || m == "/") continue;
    const std::string needle = m + "/";
    size_t next_utf = 0, utf_end = 0;  // utf_end: end of the writeUTF refs starting <= at
    size_t at = marker.find(needle);
    while (at != std::string_view::npos) {
      while (next_utf < utf_refs.size() && utf_refs[next_utf].first <= at) {
        utf_end = std::max(utf_end, utf_refs[next_utf++].second);
      }
      size_t start = at;
      for (std::string_view scheme : {"file://localhost", "file://", "file:"}) {
        if (start >= scheme.size() &&
            marker.substr(start - scheme.size(), scheme.size()) == scheme) {
          start -= scheme.size();
          break;
        }
      }
      if (at < utf_end || (start == at && start > 0 &&
                           !StartsTextPath(static_cast<unsigned char>(marker[start - 1])))) {
        at = marker.find(needle, at + 1);
        continue;
      }
      size_t end = at + needle.size();
      while (end < marker.size() && !EndsTextPath(static_cast<unsigned char>(marker[end]))) end++;
      std::string rel = ResolveInMount(marker.substr(start, end - start), mount_points);
      if (!rel.empty()) {
        found.push_back({start, end - start, false, {MarkerReference::kInMount, std::move(rel)}});
      }
      at = marker.find(needle, end);
    }
  }
  std::stable_sort(
      found.begin(), found.end(),
      [](const MarkerOccurrence& a, const MarkerOccurrence& b) { return a.pos < b.pos; });
  return found;
}

std::vector<MarkerReference> ScanMarker(std::string_view marker,
                                        const std::vector<std::string>& mount_points) {
  // Order of first appearance, each once.
  std::vector<MarkerReference> out;
  std::set<std::pair<int, std::string>> seen;
  for (auto& f : FindMarkerOccurrences(marker, mount_points)) {
    if (seen.insert({static_cast<int>(f.ref.kind), f.ref.path}).second) {
      out.push_back(std::move(f.ref));
    }
  }
  return out;
}

Result<std::string> RewriteMarkerPrefix(std::string_view marker, std::string_view old_prefix,
                                        std::string_view new_prefix, size_t* rewritten) {
  *rewritten = 0;
  if (old_prefix.empty()) return Status::InvalidArgument("empty prefix to rewrite");
  auto replace_all = [&](std::string_view text, std::string* out) {
    size_t n = 0, i = 0;
    for (size_t at = text.find(old_prefix); at != std::string_view::npos;
         at = text.find(old_prefix, i)) {
      out->append(text.substr(i, at - i));
      out->append(new_prefix);
      i = at + old_prefix.size();
      n++;
    }
    out->append(text.substr(i));
    return n;
  };
  // writeUTF strings holding the prefix get new length prefixes. Candidates inside text
  // runs are text, rewritten as such. Where plausible strings overlap, one that starts
  // with the prefix wins over one that only holds it: the byte before a real string's
  // length (say the 1 of a writeInt(1)) and the length's high byte make a "string" of the
  // length's low byte and the real text, which must not win. Otherwise the leftmost wins.
  auto end_of = [](const MarkerString& s) { return s.offset + 2 + s.length; };
  std::vector<MarkerString> candidates;
  for (const auto& s : FindUtfStrings(marker, old_prefix.size())) {
    if (InsideTextRun(marker, s)) continue;
    if (s.text(marker).find(old_prefix) == std::string_view::npos) continue;
    candidates.push_back(s);
  }
  std::vector<MarkerString> starting;  // those starting with the prefix, leftmost first
  for (const auto& s : candidates) {
    if (!s.text(marker).starts_with(old_prefix)) continue;
    if (!starting.empty() && s.offset < end_of(starting.back())) continue;
    starting.push_back(s);
  }
  std::vector<MarkerString> strings;
  size_t k = 0;  // the first of `starting` that ends after the candidate's start
  for (const auto& s : candidates) {
    while (k < starting.size() && end_of(starting[k]) <= s.offset) k++;
    if (k < starting.size() && starting[k].offset == s.offset) {
      strings.push_back(s);
      continue;
    }
    if (k < starting.size() && starting[k].offset < end_of(s)) continue;
    if (!strings.empty() && s.offset < end_of(strings.back())) continue;
    strings.push_back(s);
  }
  std::string out;
  out.reserve(marker.size() + 64);
  size_t pos = 0;
  for (const auto& s : strings) {
    *rewritten += replace_all(marker.substr(pos, s.offset - pos), &out);
    std::string text;
    *rewritten += replace_all(s.text(marker), &text);
    if (text.size() > 0xffff) {
      return Status::InvalidArgument("rewritten reference longer than 65535 bytes");
    }
    out.push_back(static_cast<char>(text.size() >> 8));
    out.push_back(static_cast<char>(text.size() & 0xff));
    out.append(text);
    pos = s.offset + 2 + s.length;
  }
  *rewritten += replace_all(marker.substr(pos), &out);
  return out;
}

namespace {

// A span of the marker to replace: [begin, end) becomes `text`, with a 2-byte writeUTF
// length in front when `utf` (then begin is where the old length was).
struct Splice {
  size_t begin = 0, end = 0;
  bool utf = false;
  std::string text;
};

// Accepted, non-overlapping [begin, end) spans.
class Spans {
 public:
  bool Free(size_t b, size_t e) const {
    auto it = spans_.lower_bound(b);
    if (it != spans_.end() && it->first < e) return false;
    return it == spans_.begin() || std::prev(it)->second <= b;
  }
  void Add(size_t b, size_t e) { spans_.emplace(b, e); }

 private:
  std::map<size_t, size_t> spans_;
};

}  // namespace

Result<std::string> RelocateMarkerReferences(std::string_view marker,
                                             const std::vector<std::string>& mount_points,
                                             const RelocateFn& relocate, size_t* relocated) {
  *relocated = 0;
  struct Edit {
    size_t begin, end;  // the span it replaces: a writeUTF string with its length, or text
    const MarkerOccurrence* occ;
    std::string text;
  };
  std::vector<MarkerOccurrence> occs = FindMarkerOccurrences(marker, mount_points);
  std::vector<Edit> edits;
  for (const auto& o : occs) {
    if (o.ref.kind != MarkerReference::kInMount) continue;
    std::optional<std::string> to = relocate(o.ref, o.text(marker));
    if (!to) continue;
    edits.push_back({o.utf ? o.pos - 2 : o.pos, o.pos + o.length, &o, std::move(*to)});
  }
  // Overlapping candidates: the longest wins, then the leftmost. A made-up string that
  // borrows a real one's length byte (writeInt(1), then a string of 256+ bytes) is the
  // shorter of the two; the caller maps only references it knows, which such fragments
  // rarely are.
  std::vector<size_t> order(edits.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return edits[a].end - edits[a].begin > edits[b].end - edits[b].begin;
  });
  Spans taken, utf_taken;
  std::vector<Splice> splices;
  std::vector<const Edit*> text_edits;
  for (size_t i : order) {
    const Edit& e = edits[i];
    if (!taken.Free(e.begin, e.end)) continue;
    taken.Add(e.begin, e.end);
    if (e.occ->utf) {
      utf_taken.Add(e.begin, e.end);
      splices.push_back({e.begin, e.end, true, e.text});
      ++*relocated;
    } else {
      text_edits.push_back(&e);
    }
  }
  // A text-run reference inside a plausible writeUTF string changes that string's length:
  // the leftmost string holding it is taken (real strings start after binary fields, the
  // made-up ones inside text), as RewriteMarkerPrefix does. None: plain text. A string
  // that would reach into a rewritten writeUTF reference or another such string, or a
  // plain one that would reach into such a string, is left as written.
  std::sort(text_edits.begin(), text_edits.end(),
            [](const Edit* a, const Edit* b) { return a->begin < b->begin; });
  std::vector<MarkerString> strings;
  for (const auto& str : FindUtfStrings(marker)) {
    if (!InsideTextRun(marker, str)) strings.push_back(str);
  }
  // reach[i]: the furthest end of strings[0..i], to find by binary search the leftmost
  // string that reaches past a point.
  std::vector<size_t> reach(strings.size());
  for (size_t i = 0; i < strings.size(); i++) {
    size_t end = strings[i].offset + 2 + strings[i].length;
    reach[i] = i == 0 ? end : std::max(reach[i - 1], end);
  }
  Spans strings_taken;
  std::map<size_t, std::vector<const Edit*>> inside;  // index in `strings` -> its edits
  std::vector<const Edit*> plain;
  for (const Edit* e : text_edits) {
    size_t i = std::lower_bound(reach.begin(), reach.end(), e->end) - reach.begin();
    if (i == strings.size() || strings[i].offset + 2 > e->begin) {
      plain.push_back(e);
      continue;
    }
    size_t sb = strings[i].offset, se = sb + 2 + strings[i].length;
    if (!inside.count(i)) {
      if (!utf_taken.Free(sb, se) || !strings_taken.Free(sb, se)) continue;
      strings_taken.Add(sb, se);
    }
    inside[i].push_back(e);
  }
  for (const Edit* e : plain) {
    if (!strings_taken.Free(e->begin, e->end)) continue;
    splices.push_back({e->begin, e->end, false, e->text});
    ++*relocated;
  }
  for (const auto& [i, list] : inside) {
    size_t pos = strings[i].offset + 2, end = pos + strings[i].length;
    std::string text;
    for (const Edit* e : list) {
      text.append(marker.substr(pos, e->begin - pos));
      text.append(e->text);
      pos = e->end;
      ++*relocated;
    }
    text.append(marker.substr(pos, end - pos));
    splices.push_back({strings[i].offset, end, true, std::move(text)});
  }
  std::sort(splices.begin(), splices.end(),
            [](const Splice& a, const Splice& b) { return a.begin < b.begin; });
  std::string out;
  out.reserve(marker.size() + 64);
  size_t pos = 0;
  for (const auto& sp : splices) {
    out.append(marker.substr(pos, sp.begin - pos));
    if (sp.utf) {
      if (sp.text.size() > 0xffff) {
        *relocated = 0;
        return Status::InvalidArgument("relocated reference longer than 65535 bytes");
      }
      out.push_back(static_cast<char>(sp.text.size() >> 8));
      out.push_back(static_cast<char>(sp.text.size() & 0xff));
    }
    out.append(sp.text);
    pos = sp.end;
  }
  out.append(marker.substr(pos));
  return out;
}

}  // namespace snapfs
