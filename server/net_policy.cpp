// AddressPolicy (net_policy.h): which addresses outbound fetches may connect to. The refused
// ranges are the special-purpose registries of IANA (RFC 6890 and successors): anything that is
// not plain public unicast could reach this host, its LAN, or a cloud metadata service.
#include "net_policy.h"

#include <arpa/inet.h>

#include <cstring>
#include <stdexcept>

namespace stepaudio::server {
namespace {

struct RefusedRange {
  Cidr cidr;
  const char* kind;  // goes into the reason: "<kind> address <text>"
};

struct RangeSpec {
  const char* net;
  int prefix;
  const char* kind;
};

// Order matters where ranges nest: the first match names the reason.
constexpr RangeSpec kRefusedV4[] = {
    {"0.0.0.0", 8, "unspecified"},
    {"10.0.0.0", 8, "private"},
    {"100.64.0.0", 10, "CGNAT (shared)"},
    {"127.0.0.0", 8, "loopback"},
    {"169.254.0.0", 16, "link-local/metadata"},  // 169.254.169.254 is the cloud metadata service
    {"172.16.0.0", 12, "private"},
    {"192.0.0.0", 24, "IETF protocol assignment"},
    {"192.0.2.0", 24, "documentation"},
    {"192.168.0.0", 16, "private"},
    {"198.18.0.0", 15, "benchmarking"},
    {"198.51.100.0", 24, "documentation"},
    {"203.0.113.0", 24, "documentation"},
    {"224.0.0.0", 4, "multicast"},
    {"255.255.255.255", 32, "broadcast"},  // before 240/4 for the more precise name
    {"240.0.0.0", 4, "reserved"},
};

// ::, ::1 and the ranges that embed an IPv4 address are handled in code before this table.
constexpr RangeSpec kRefusedV6[] = {
    {"fd00:ec2::254", 128, "link-local/metadata"},  // AWS IMDS over IPv6 (inside the ULA range)
    {"fc00::", 7, "unique local (ULA)"},
    {"fe80::", 10, "link-local"},
    {"fec0::", 10, "site-local"},
    {"ff00::", 8, "multicast"},
    {"2001:db8::", 32, "documentation"},
    {"100::", 64, "discard-only"},
    {"64:ff9b:1::", 48, "local-use NAT64"},  // RFC 8215: translates into private networks
};

bool parse_address(const std::string& text, Cidr* out) {
  if (inet_pton(AF_INET, text.c_str(), out->addr) == 1) {
    out->family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), out->addr) == 1) {
    out->family = AF_INET6;
    return true;
  }
  return false;
}

template <size_t N>
std::vector<RefusedRange> build_table(const RangeSpec (&specs)[N]) {
  std::vector<RefusedRange> table;
  for (const RangeSpec& s : specs) {
    RefusedRange r{{}, s.kind};
    parse_address(s.net, &r.cidr);  // constant, known to parse
    r.cidr.prefix = s.prefix;
    table.push_back(r);
  }
  return table;
}

const std::vector<RefusedRange>& refused_table(int family) {
  static const std::vector<RefusedRange> v4 = build_table(kRefusedV4);
  static const std::vector<RefusedRange> v6 = build_table(kRefusedV6);
  return family == AF_INET ? v4 : v6;
}

// True when the first `prefix` bits of `a` and `net` agree.
bool prefix_match(const unsigned char* a, const unsigned char* net, int prefix) {
  const int full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(a, net, full) != 0) return false;
  if (rest == 0) return true;
  const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a[full] & mask) == (net[full] & mask);
}

bool in_list(int family, const unsigned char* a, const std::vector<Cidr>& list) {
  for (const Cidr& c : list)
    if (c.family == family && prefix_match(a, c.addr, c.prefix)) return true;
  return false;
}

std::string to_text(int family, const unsigned char* a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, a, buf, sizeof buf);
  return buf;
}

const char* refused_kind(int family, const unsigned char* a) {
  for (const RefusedRange& r : refused_table(family))
    if (prefix_match(a, r.cidr.addr, r.cidr.prefix)) return r.kind;
  return nullptr;
}

// An IPv6 address that carries an IPv4 one: the translator or the kernel would end up talking
// to that IPv4 address, so it is judged as such. Returns the form's name, or nullptr.
const char* embedded_v4(const unsigned char* a, unsigned char* v4) {
  static const unsigned char kZero[12] = {};
  static const unsigned char kNat64[12] = {0x00, 0x64, 0xff, 0x9b};
  const char* form = nullptr;
  if (std::memcmp(a, kZero, 10) == 0 && a[10] == 0xff && a[11] == 0xff) {
    form = "IPv4-mapped";
  } else if (std::memcmp(a, kZero, 12) == 0) {
    form = "IPv4-compatible";
  } else if (std::memcmp(a, kNat64, 12) == 0) {
    form = "NAT64";
  } else if (a[0] == 0x20 && a[1] == 0x02) {
    std::memcpy(v4, a + 2, 4);  // 2002:AABB:CCDD::/48
    return "6to4";
  }
  if (form) std::memcpy(v4, a + 12, 4);
  return form;
}

std::string refusal_v4(const unsigned char* a, const std::vector<Cidr>& allow) {
  if (in_list(AF_INET, a, allow)) return "";
  // A v6 allow entry written as ::ffff:a.b.c.d/N also covers the plain IPv4 address.
  unsigned char mapped[16] = {};
  mapped[10] = mapped[11] = 0xff;
  std::memcpy(mapped + 12, a, 4);
  if (in_list(AF_INET6, mapped, allow)) return "";
  const char* kind = refused_kind(AF_INET, a);
  return kind ? std::string(kind) + " address " + to_text(AF_INET, a) : "";
}

std::string refusal_v6(const unsigned char* a, const std::vector<Cidr>& allow) {
  if (in_list(AF_INET6, a, allow)) return "";
  const std::string text = to_text(AF_INET6, a);
  static const unsigned char kZero[16] = {};
  if (std::memcmp(a, kZero, 16) == 0) return "unspecified address " + text;
  if (std::memcmp(a, kZero, 15) == 0 && a[15] == 1) return "loopback address " + text;

  unsigned char v4[4];
  if (const char* form = embedded_v4(a, v4)) {
    // Only the mapped form is the very same socket address as the IPv4 one (the kernel connects
    // to the IPv4 host), so only it may use an IPv4 allow entry; the others go through a
    // translator or tunnel elsewhere and stay refused unless allowed in IPv6 form.
    const bool mapped = std::strcmp(form, "IPv4-mapped") == 0;
    if (mapped && in_list(AF_INET, v4, allow)) return "";
    const char* kind = refused_kind(AF_INET, v4);
    if (!kind) return "";
    return std::string(kind) + " address " + text + " (" + form + " " + to_text(AF_INET, v4) + ")";
  }
  const char* kind = refused_kind(AF_INET6, a);
  return kind ? std::string(kind) + " address " + text : "";
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

Cidr parse_cidr(const std::string& entry) {
  const auto bad = [&entry]() {
    return std::invalid_argument("bad CIDR in allow list: '" + entry + "'");
  };
  const size_t slash = entry.find('/');
  Cidr c;
  if (!parse_address(entry.substr(0, slash), &c)) throw bad();
  const int max_prefix = c.family == AF_INET ? 32 : 128;
  c.prefix = max_prefix;
  if (slash != std::string::npos) {
    const std::string digits = entry.substr(slash + 1);
    // Digits only, so "8x", "+8", "-1" and "" are all rejected rather than half-parsed.
    if (digits.empty() || digits.size() > 3 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      throw bad();
    c.prefix = std::stoi(digits);
    if (c.prefix > max_prefix) throw bad();
  }
  return c;
}

}  // namespace

AddressPolicy AddressPolicy::with_allowed(const std::string& cidr_list) {
  AddressPolicy policy;
  size_t start = 0;
  while (start <= cidr_list.size()) {
    size_t comma = cidr_list.find(',', start);
    if (comma == std::string::npos) comma = cidr_list.size();
    // Empty entries (a trailing comma, an empty setting) are skipped, not errors.
    const std::string entry = trim(cidr_list.substr(start, comma - start));
    if (!entry.empty()) policy.allow_.push_back(parse_cidr(entry));
    start = comma + 1;
  }
  return policy;
}

std::string AddressPolicy::refusal(const sockaddr* addr) const {
  if (!addr) return "no address";
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return refusal_v4(reinterpret_cast<const unsigned char*>(&in->sin_addr), allow_);
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    return refusal_v6(in6->sin6_addr.s6_addr, allow_);
  }
  return "unsupported address family " + std::to_string(addr->sa_family);
}

}  // namespace stepaudio::server
