// Rendering of the status table (see cli/status_table.h).
#include "cli/status_table.h"

#include <fmt/format.h>

#include <vector>

namespace clusterd::cli {

using nlohmann::json;

std::string humanBytes(uint64_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(b) / 1024);
  if (b < 1024ull * 1024 * 1024) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1024 * 1024));
  return fmt::format("{:.2f} GiB", static_cast<double>(b) / (1024.0 * 1024 * 1024));
}

std::string humanDuration(int64_t ms) {
  if (ms <= 0) return "0";
  int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m {}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h {}m", s / 3600, (s % 3600) / 60);
  return fmt::format("{}d {}h", s / 86400, (s % 86400) / 3600);
}

namespace {

const char* stateColor(const std::string& state) {
  if (state == "online") return "\x1b[32m";
  if (state == "errored") return "\x1b[31m";
  if (state == "launching" || state == "waiting") return "\x1b[36m";
  return "\x1b[33m";  // stopping, stopped
}

}  // namespace

std::string renderStatusTable(const json& workers, bool color) {
  const std::vector<std::string> head = {"id", "app", "mode", "inst", "pid", "state",
                                         "uptime", "↺", "cpu", "memory"};
  std::vector<std::vector<std::string>> rows;
  for (const json& w : workers) {
    std::string state = w.value("state", "");
    std::string role = w.value("role", "main");
    if (role != "main") state += role == "incoming" ? " (new)" : " (old)";
    int64_t pid = w.value("pid", 0);
    rows.push_back({std::to_string(w.value("id", 0)), w.value("app", ""), w.value("mode", ""),
                    std::to_string(w.value("instance", 0)), pid > 0 ? std::to_string(pid) : "-",
                    state, humanDuration(w.value("uptime_ms", int64_t{0})),
                    std::to_string(w.value("restarts", 0)), fmt::format("{:.1f}%", w.value("cpu", 0.0)),
                    humanBytes(w.value("memory", uint64_t{0}))});
  }
  // Display width: "↺" is one column but three bytes.
  auto width = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  };
  std::vector<size_t> w(head.size());
  for (size_t i = 0; i < head.size(); ++i) {
    w[i] = width(head[i]);
    for (auto& r : rows) w[i] = std::max(w[i], width(r[i]));
  }
  auto line = [&](const char* l, const char* m, const char* r) {
    std::string s = l;
    for (size_t i = 0; i < w.size(); ++i) {
      for (size_t k = 0; k < w[i] + 2; ++k) s += "─";
      s += i + 1 < w.size() ? m : r;
    }
    return s + "\n";
  };
  auto cells = [&](const std::vector<std::string>& r, bool is_head) {
    std::string s = "│";
    for (size_t i = 0; i < r.size(); ++i) {
      std::string cell = r[i] + std::string(w[i] - width(r[i]), ' ');
      if (color && is_head) cell = "\x1b[1m" + cell + "\x1b[0m";
      if (color && !is_head && i == 5) cell = stateColor(r[i].substr(0, r[i].find(' '))) + cell + "\x1b[0m";
      s += " " + cell + " │";
    }
    return s + "\n";
  };
  std::string out = line("┌", "┬", "┐") + cells(head, true) + line("├", "┼", "┤");
  for (auto& r : rows) out += cells(r, false);
  out += line("└", "┴", "┘");
  if (rows.empty()) out += "no apps; start some with `clusterd start ecosystem.yaml`\n";
  return out;
}

}  // namespace clusterd::cli
