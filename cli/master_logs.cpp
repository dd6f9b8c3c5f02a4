// `clusterd logs [APP] [--lines N] [--follow] [--err]` and `clusterd flush
// [APP]`: worker log files, found through the daemon (or in <home>/logs
// when no daemon runs), read directly by the CLI.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "cli/control_client.h"

namespace clusterd::cli {

using nlohmann::json;

namespace {

struct Source {
  std::string label;  // "web out"
  std::string path;
  uint64_t offset = 0;
};

std::vector<Source> findSources(CliContext& ctx, const std::string& app, bool err_only) {
  std::vector<Source> out;
  auto add = [&](const std::string& name, const std::string& o, const std::string& e) {
    if (!err_only && !o.empty()) out.push_back({name + " out", o});
    if (!e.empty() && e != o) out.push_back({name + " err", e});
  };
  if (auto c = ControlClient::connect(ctx.home)) {
    auto r = c->call({{"cmd", "logs"}, {"app", app}}, std::chrono::seconds(5));
    if (r && r->value("ok", false)) {
      for (const json& f : (*r)["files"]) add(f.value("app", ""), f.value("out", ""), f.value("err", ""));
      return out;
    }
    if (r) std::cerr << "clusterd: " << r->value("error", std::string("logs failed")) << "\n";
  }
  // No daemon: read what the last one left in <home>/logs.
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(ctx.home + "/logs", ec)) {
    std::string f = e.path().filename().string();
    for (const char* suffix : {"-out.log", "-error.log"}) {
      std::string s = suffix;
      if (f.size() <= s.size() || f.compare(f.size() - s.size(), s.size(), s) != 0) continue;
      std::string name = f.substr(0, f.size() - s.size());
      if (!app.empty() && name != app) continue;
      if (s == "-out.log") add(name, e.path().string(), "");
      else add(name, "", e.path().string());
    }
  }
  return out;
}

void printTail(Source& s, int lines) {
  std::ifstream f(s.path, std::ios::binary);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(f, line)) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  struct stat st {};
  s.offset = ::stat(s.path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  std::cout << "==> " << s.path << " <==\n";
  for (auto& l : last) std::cout << l << "\n";
}

void follow(std::vector<Source>& sources) {
  std::cout.flush();
  for (;;) {
    for (auto& s : sources) {
      struct stat st {};
      if (::stat(s.path.c_str(), &st) != 0) continue;
      uint64_t size = static_cast<uint64_t>(st.st_size);
      if (size < s.offset) s.offset = 0;  // rotated or flushed
      if (size == s.offset) continue;
      std::ifstream f(s.path, std::ios::binary);
      f.seekg(static_cast<std::streamoff>(s.offset));
      std::string chunk(size - s.offset, '\0');
      f.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      chunk.resize(static_cast<size_t>(f.gcount()));
      s.offset += chunk.size();
      size_t start = 0;
      while (start < chunk.size()) {
        size_t nl = chunk.find('\n', start);
        std::string line = chunk.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        std::cout << s.label << " | " << line << "\n";
        start = nl == std::string::npos ? chunk.size() : nl + 1;
      }
      std::cout.flush();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

void addMasterLogCommands(CLI::App& app, CliContext& ctx) {
  {
    auto* sub = app.add_subcommand("logs", "Print the last lines of worker logs\n"
                                           "  clusterd logs web --lines 50 --follow");
    auto name = std::make_shared<std::string>();
    auto lines = std::make_shared<int>(15);
    auto follow_flag = std::make_shared<bool>(false);
    auto err_only = std::make_shared<bool>(false);
    sub->add_option("app", *name, "App name (default: all)");
    sub->add_option("--lines", *lines, "Lines of each file (default 15)")->check(CLI::NonNegativeNumber);
    sub->add_flag("--follow,-f", *follow_flag, "Keep printing new lines");
    sub->add_flag("--err", *err_only, "Only the error logs");
    sub->callback([&ctx, name, lines, follow_flag, err_only] {
      auto sources = findSources(ctx, *name, *err_only);
      if (sources.empty()) {
        std::cerr << "clusterd: no log files" << (name->empty() ? "" : " for " + *name) << " in "
                  << ctx.home << "/logs\n";
        ctx.exit_code = kExitFailed;
        return;
      }
      for (auto& s : sources) printTail(s, *lines);
      if (*follow_flag) follow(sources);
    });
  }
  {
    auto* sub = app.add_subcommand("flush", "Empty the log files (of one app, or all)");
    auto name = std::make_shared<std::string>();
    sub->add_option("app", *name, "App name (default: all)");
    sub->callback([&ctx, name] {
      auto c = ControlClient::connect(ctx.home);
      if (!c) {
        std::cerr << "clusterd: " << c.error().message << "\n";
        ctx.exit_code = kExitSystem;
        return;
      }
      auto r = c->call({{"cmd", "flush"}, {"app", *name}});
      if (!r || !r->value("ok", false)) {
        std::cerr << "clusterd: " << (r ? r->value("error", std::string("flush failed")) : r.error().message) << "\n";
        ctx.exit_code = r ? kExitFailed : kExitSystem;
        return;
      }
      std::cout << "flushed " << (*r)["count"] << " log file(s)\n";
    });
  }
}

}  // namespace clusterd::cli
