// Implementation of db/types.h: rows, errors and their classification.
#include "db/types.h"

#include <cassert>
#include <charconv>

namespace clusterd::db {

ErrorKind classifySqlState(std::string_view s) {
  if (s.size() != 5) return ErrorKind::kPermanent;
  if (s == "40001" || s == "40P01") return ErrorKind::kTransient;  // serialization, deadlock
  if (s.substr(0, 2) == "08") return ErrorKind::kTransient;        // connection exceptions
  if (s == "57P01" || s == "57P02" || s == "57P03") return ErrorKind::kTransient;  // shutdown
  if (s.substr(0, 2) == "53") return ErrorKind::kTransient;  // out of connections/memory/disk
  if (s == "55P03") return ErrorKind::kTransient;            // lock not available
  return ErrorKind::kPermanent;
}

std::string int64Array(const std::vector<int64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(values[i]);
  }
  out += '}';
  return out;
}

std::string textArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

Rows::Rows(PGresult* result) : result_(result, PQclear) {}

int Rows::size() const { return result_ ? PQntuples(result_.get()) : 0; }
int Rows::columns() const { return result_ ? PQnfields(result_.get()) : 0; }

bool Rows::isNull(int row, int col) const {
  assert(row < size() && col < columns());
  return PQgetisnull(result_.get(), row, col) == 1;
}

std::string_view Rows::text(int row, int col) const {
  assert(row < size() && col < columns());
  return {PQgetvalue(result_.get(), row, col),
          static_cast<size_t>(PQgetlength(result_.get(), row, col))};
}

int64_t Rows::int64(int row, int col) const {
  if (isNull(row, col)) return 0;
  std::string_view t = text(row, col);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  assert(ec == std::errc() && p == t.data() + t.size());
  (void)p;
  (void)ec;
  return v;
}

bool Rows::boolean(int row, int col) const { return !isNull(row, col) && text(row, col) == "t"; }

int Rows::column(std::string_view name) const {
  if (!result_) return -1;
  std::string n(name);
  return PQfnumber(result_.get(), n.c_str());
}

int64_t Rows::affected() const {
  if (!result_) return 0;
  const char* t = PQcmdTuples(result_.get());
  return (t && *t) ? std::strtoll(t, nullptr, 10) : 0;
}

std::string_view Rows::commandStatus() const {
  return result_ ? PQcmdStatus(result_.get()) : "";
}

const Rows& Reply::operator[](size_t i) const {
  assert(i < results.size());
  return results[i];
}

DbError errorFromResult(const PGresult* r) {
  DbError e;
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  e.sqlstate = state ? state : "";
  const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  const char* detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
  if (primary) {
    e.message = primary;
    if (detail) e.message += std::string(" (") + detail + ")";
  } else {
    e.message = PQresultErrorMessage(r);
    while (!e.message.empty() && e.message.back() == '\n') e.message.pop_back();
  }
  if (!e.sqlstate.empty()) e.message += " [SQLSTATE " + e.sqlstate + "]";
  e.kind = e.sqlstate.empty() ? ErrorKind::kTransient : classifySqlState(e.sqlstate);
  return e;
}

DbError connectionError(std::string message) {
  // libpq's messages span lines ("...\n\tThis probably means..."); logs want one.
  std::string flat;
  for (char c : message) {
    if (c == '\n' || c == '\t') {
      if (!flat.empty() && flat.back() != ' ') flat += ' ';
    } else {
      flat += c;
    }
  }
  message = std::move(flat);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return DbError{ErrorKind::kTransient, "08006", std::move(message)};
}

}  // namespace clusterd::db
