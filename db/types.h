// The values that travel through the db module: statements with text
// parameters, result rows (owning a PGresult), a Reply for a batch of
// statements, and DbError with the SQLSTATE-based transient/permanent split
// that job handlers use to decide between "retry later" and "fail now".
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace clusterd::db {

// Transient: retrying the same work later can succeed (connection lost,
// server shutting down, serialization failure, deadlock, too many
// connections). Permanent: the data or the statement is wrong (constraint
// violation, bad input, syntax error); retrying repeats the failure.
enum class ErrorKind { kTransient, kPermanent };

struct DbError {
  ErrorKind kind = ErrorKind::kPermanent;
  std::string sqlstate;  // five characters; empty when no server answered
  std::string message;   // the server's message (with detail) or the client-side cause
  bool transient() const { return kind == ErrorKind::kTransient; }
};

// Classifies a SQLSTATE: 40001, 40P01, class 08, 57P01-57P03, class 53 and
// 55P03 are transient; everything else (23xxx, 22xxx, 42xxx, ...) permanent.
ErrorKind classifySqlState(std::string_view sqlstate);

// One SQL statement with its parameters in text format ($1, $2, ...);
// std::nullopt is SQL NULL. A statement without parameters that runs alone
// may hold several `;`-separated commands (the simple query protocol).
struct Statement {
  std::string sql;
  std::vector<std::optional<std::string>> params;
};

// Parameter conversion for stmt(): integers and strings as text, optionals
// as NULL when empty.
inline std::optional<std::string> toParam(std::string v) { return v; }
inline std::optional<std::string> toParam(std::string_view v) { return std::string(v); }
inline std::optional<std::string> toParam(const char* v) { return std::string(v); }
inline std::optional<std::string> toParam(std::optional<std::string> v) { return v; }
inline std::optional<std::string> toParam(bool v) { return std::string(v ? "true" : "false"); }
template <typename T>
  requires std::is_integral_v<T>
std::optional<std::string> toParam(T v) {
  return std::to_string(v);
}

template <typename... Args>
Statement stmt(std::string sql, Args&&... args) {
  return Statement{std::move(sql), {toParam(std::forward<Args>(args))...}};
}

// Array literals for `= ANY($1::bigint[])` style parameters.
std::string int64Array(const std::vector<int64_t>& values);
std::string textArray(const std::vector<std::string>& values);

// The rows (or command status) of one statement. Cheap to copy: the PGresult
// is shared and freed with the last copy.
class Rows {
 public:
  Rows() = default;
  explicit Rows(PGresult* result);  // takes ownership

  int size() const;
  int columns() const;
  bool isNull(int row, int col) const;
  std::string_view text(int row, int col) const;
  std::string str(int row, int col) const { return std::string(text(row, col)); }
  int64_t int64(int row, int col) const;  // 0 for NULL; asserts the text is a number
  bool boolean(int row, int col) const;   // Postgres' "t"/"f"
  int column(std::string_view name) const;  // -1 when there is no such column
  int64_t affected() const;               // rows touched by INSERT/UPDATE/DELETE
  std::string_view commandStatus() const;  // "INSERT 0 1", "COMMIT", ...

 private:
  std::shared_ptr<PGresult> result_;
};

// The outcome of a batch: on success one Rows per statement, in order; on
// failure the first error (statements after it did not run).
struct Reply {
  std::vector<Rows> results;
  std::optional<DbError> error;
  // With an error from the server: the index in the batch of the statement
  // that failed (the ones before it ran; the ones after it were skipped).
  std::optional<size_t> failed_at = std::nullopt;
  bool ok() const { return !error.has_value(); }
  const Rows& operator[](size_t i) const;
};

using ReplyCallback = std::function<void(Reply)>;

// The error from a failed PGresult (SQLSTATE, primary message, detail).
DbError errorFromResult(const PGresult* result);
// A lost or unusable connection: always transient, SQLSTATE 08006.
DbError connectionError(std::string message);

}  // namespace clusterd::db
