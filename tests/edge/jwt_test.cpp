#include <gtest/gtest.h>

#include "edge/jwt.hpp"
#include "protocols/crypto.hpp"
#include "protocols/errc.hpp"

using namespace shop;
using namespace shop::edge;

TEST(Jwt, test_issued_tokens_verify_and_carry_their_claims) {
  jwt_codec jwt{"s3cret"};
  auto token = jwt.issue({"u1", "alice", user_role::admin, 2000});
  auto c = jwt.verify(token, 1000);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->sub, "u1");
  EXPECT_EQ(c->name, "alice");
  EXPECT_EQ(c->role, user_role::admin);
  // Expiry is checked on every call, also for a cached token.
  auto expired = jwt.verify(token, 2000);
  ASSERT_FALSE(expired);
  EXPECT_EQ(describe(expired.error()).code, errc::unauthorized);
}

TEST(Jwt, test_forged_and_alg_none_tokens_are_refused) {
  jwt_codec jwt{"s3cret"};
  jwt_codec other{"not-the-secret"};
  EXPECT_FALSE(jwt.verify(other.issue({"u1", "alice", user_role::admin, 2000}), 1000));
  auto payload = base64url_encode(R"({"sub":"u1","name":"alice","role":"admin","exp":2000})");
  auto none = base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  EXPECT_FALSE(jwt.verify(none, 1000));
  // A token signed correctly but claiming another algorithm is refused too.
  auto hs512 = base64url_encode(R"({"alg":"HS512","typ":"JWT"})") + "." + payload;
  EXPECT_FALSE(jwt.verify(hs512 + "." + base64url_encode(hmac_sha256("s3cret", hs512)), 1000));
  // Tampering with the payload breaks the signature.
  auto good = jwt.issue({"u1", "alice", user_role::user, 2000});
  auto dot1 = good.find('.'), dot2 = good.rfind('.');
  auto tampered = good.substr(0, dot1 + 1) + payload + good.substr(dot2);
  EXPECT_FALSE(jwt.verify(tampered, 1000));
  for (auto junk : {"", "a.b", "a.b.c.d", "!!!.###.$$$"})
    EXPECT_FALSE(jwt.verify(junk, 1000)) << junk;
  // The signature's last character carries 2 bits past its 32 bytes. A
  // token with them set decodes to the same signature, but is not the token
  // that was issued: refused.
  ASSERT_TRUE(jwt.verify(good, 1000));
  const std::string alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  auto last = alphabet.find(good.back());
  ASSERT_EQ(last % 4, 0u) << good;
  for (size_t low = 1; low < 4; ++low) {
    auto variant = good;
    variant.back() = alphabet[last + low];
    EXPECT_FALSE(jwt.verify(variant, 1000)) << variant;
  }
}

TEST(Jwt, test_a_header_with_two_algs_or_a_crit_is_refused_even_when_signed) {
  jwt_codec jwt{"s3cret"};
  auto payload = base64url_encode(R"({"sub":"u1","name":"alice","role":"user","exp":2000})");
  auto signed_with = [&](const std::string& header) {
    auto input = base64url_encode(header) + "." + payload;
    return input + "." + base64url_encode(hmac_sha256("s3cret", input));
  };
  // The same signature under a plain header passes: only the header differs.
  ASSERT_TRUE(jwt.verify(signed_with(R"({"alg":"HS256","typ":"JWT"})"), 1000));
  ASSERT_TRUE(jwt.verify(signed_with(R"({"typ":"JWT","kid":"k1","alg":"HS256"})"), 1000));
  for (auto header : {R"({"alg":"HS256","alg":"none"})", R"({"alg":"none","alg":"HS256"})",
                      R"({"alg":"HS256","alg":"HS256"})",
                      R"({"alg":"HS256","crit":["exp"],"exp":1})", R"({"typ":"JWT"})",
                      R"(["alg","HS256"])", R"({"alg":null})"}) {
    auto r = jwt.verify(signed_with(header), 1000);
    ASSERT_FALSE(r) << header;
    EXPECT_EQ(describe(r.error()).code, errc::unauthorized) << header;
  }
}

// A claim this node reads appears once. Parsers differ on which of two they
// take (RFC 7519 lets them take the last), so a signed token naming two roles
// or two expiries is refused rather than read one way here and another way in
// front of this node.
TEST(Jwt, test_a_claim_given_twice_is_refused_even_when_signed) {
  jwt_codec jwt{"s3cret"};
  auto signed_with = [&](const std::string& claims) {
    auto input = base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url_encode(claims);
    return input + "." + base64url_encode(hmac_sha256("s3cret", input));
  };
  // Claims it does not read may repeat; the same claims once each pass.
  ASSERT_TRUE(jwt.verify(signed_with(R"({"sub":"u1","name":"alice","role":"user","exp":2000,"x":1,"x":2})"), 1000));
  for (auto claims : {R"({"sub":"u1","name":"alice","role":"user","role":"admin","exp":2000})",
                      R"({"sub":"u1","name":"alice","role":"user","exp":500,"exp":2000})",
                      R"({"sub":"u1","sub":"u2","name":"alice","role":"user","exp":2000})",
                      R"({"sub":"u1","name":"alice","name":"admin","exp":2000})",
                      R"({"sub":"u1","name":"alice","exp":2000,"nbf":1,"nbf":2})"}) {
    auto r = jwt.verify(signed_with(claims), 1000);
    ASSERT_FALSE(r) << claims;
    EXPECT_EQ(describe(r.error()).code, errc::unauthorized) << claims;
  }
}

// `nbf` (not before), when a token carries one, holds: refused before it, and
// the same token verifies once that time has come (a refusal is not cached).
TEST(Jwt, test_a_token_is_refused_before_its_not_before_time) {
  jwt_codec jwt{"s3cret"};
  auto input = base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "."
               + base64url_encode(R"({"sub":"u1","name":"alice","exp":2000,"nbf":1500})");
  auto token = input + "." + base64url_encode(hmac_sha256("s3cret", input));
  auto early = jwt.verify(token, 1000);
  ASSERT_FALSE(early);
  EXPECT_EQ(describe(early.error()).code, errc::unauthorized);
  EXPECT_NE(describe(early.error()).message.find("not valid yet"), std::string::npos);
  EXPECT_TRUE(jwt.verify(token, 1500));
  EXPECT_TRUE(jwt.verify(token, 1999));
  // A malformed `nbf` makes the claims malformed.
  auto bad = base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "."
             + base64url_encode(R"({"sub":"u1","name":"alice","exp":2000,"nbf":"soon"})");
  EXPECT_FALSE(jwt.verify(bad + "." + base64url_encode(hmac_sha256("s3cret", bad)), 1000));
}
