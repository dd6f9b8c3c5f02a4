// Unit tests of db/types.h: SQLSTATE classification and array literals.
#include <catch2/catch.hpp>

#include "db/types.h"

namespace db_types_test {

using namespace clusterd::db;

TEST_CASE("sqlstates of lost connections, deadlocks and serialization failures are transient",
          "[db]") {
  for (const char* s : {"40001", "40P01", "08006", "08001", "57P01", "53300", "55P03"})
    CHECK(classifySqlState(s) == ErrorKind::kTransient);
}

TEST_CASE("sqlstates of bad data and bad statements are permanent", "[db]") {
  for (const char* s : {"23505", "23514", "23503", "22P02", "42P01", "42601", "", "XX000"})
    CHECK(classifySqlState(s) == ErrorKind::kPermanent);
}

TEST_CASE("array literals quote text and keep integers bare", "[db]") {
  CHECK(int64Array({}) == "{}");
  CHECK(int64Array({1, -2, 3}) == "{1,-2,3}");
  CHECK(textArray({"a", "b\"c", "d\\e"}) == R"({"a","b\"c","d\\e"})");
}

TEST_CASE("stmt converts integers, strings and empty optionals to text parameters", "[db]") {
  Statement s = stmt("SELECT $1, $2, $3, $4", 42, std::string("x"), std::optional<std::string>{},
                     true);
  REQUIRE(s.params.size() == 4);
  CHECK(*s.params[0] == "42");
  CHECK(*s.params[1] == "x");
  CHECK_FALSE(s.params[2].has_value());
  CHECK(*s.params[3] == "true");
}

}  // namespace db_types_test
