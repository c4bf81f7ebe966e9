// Which network addresses the server may connect to on a user's behalf (audio_url fetches and
// webhook deliveries). Public unicast addresses only, unless an allow-list names a range:
// refused are loopback, private (10/8, 172.16/12, 192.168/16), CGNAT 100.64/10, link-local
// (169.254/16 with the cloud metadata address, fe80::/10), multicast, broadcast, unspecified,
// reserved/documentation ranges, IPv6 ULA fc00::/7, and the IPv4-mapped/compatible/NAT64 forms
// of every refused IPv4 range. Only the IPv4-mapped form (::ffff:a.b.c.d) also matches IPv4
// allow-list entries; the compatible/NAT64/6to4 forms reach the IPv4 host through a translator
// or tunnel, so they need an IPv6 allow entry.
// Thread-safety: immutable after construction.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <vector>

namespace stepaudio::server {

struct Cidr {
  int family = AF_INET;  // AF_INET or AF_INET6
  unsigned char addr[16] = {};
  int prefix = 0;
};

class AddressPolicy {
 public:
  AddressPolicy() = default;
  // "127.0.0.1/32,::1/128,10.0.0.0/8" (spaces allowed; a bare address is a /32 or /128).
  // Throws std::invalid_argument naming the bad entry.
  static AddressPolicy with_allowed(const std::string& cidr_list);

  // Empty string when connecting to `addr` is allowed, else the reason ("private
  // address 10.1.2.3").
  std::string refusal(const sockaddr* addr) const;
  bool allowed(const sockaddr* addr) const { return refusal(addr).empty(); }
  const std::vector<Cidr>& allow_list() const { return allow_; }

 private:
  std::vector<Cidr> allow_;
};

}  // namespace stepaudio::server
