// Loading an ecosystem file: read it, parse it as YAML (JSON is YAML), walk
// the top level, read every app and section, then run the cross-app checks.
// See config/load.h for the promise and docs/CONFIG.md for the format.
#include "config/load.h"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "config/internal.h"

extern char** environ;

namespace clusterd::config {
namespace {

int machineCores() {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

EnvLookup makeLookup(const LoadOptions& options) {
  if (options.environment) {
    auto env = *options.environment;
    return [env](const std::string& name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
  }
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

constexpr std::string_view kTopKeys[] = {"apps", "queue", "postgres", "mail", "handlers"};

void readApps(Reader& r, const Reader::Entry& e, const std::string& base_dir,
              const LoadOptions& options, std::vector<AppDraft>& drafts) {
  const YAML::Mark at = Reader::markOf(e.value, e.key_node);
  if (!e.value.IsSequence()) {
    r.error(
        at, "apps",
        fmt::format("expected a list of apps (`- name: …`), got {}", Reader::describe(e.value)));
    return;
  }
  if (e.value.size() == 0) {
    r.error(at, "apps", "the list is empty; add at least one app");
    return;
  }
  for (size_t i = 0; i < e.value.size(); ++i) {
    AppDraft d;
    d.base_dir = base_dir;
    readApp(r, e.value[i], i, options, d);
    drafts.push_back(std::move(d));
  }
}

}  // namespace

std::string Diagnostic::toString() const {
  std::string out = file;
  if (line > 0) out += fmt::format(":{}:{}", line, column);
  out += ": ";
  if (!field.empty()) out += field + ": ";
  out += message;
  return out;
}

LoadResult loadEcosystemText(const std::string& text, const std::string& path,
                             const LoadOptions& options) {
  LoadResult result;
  Ecosystem& eco = result.ecosystem;
  eco.path = absolutePath(path, std::filesystem::current_path().string());
  eco.base_dir = std::filesystem::path(eco.path).parent_path().string();
  Reader r(path, text, makeLookup(options));

  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // Only the first syntax error is known: yaml-cpp stops there.
    r.error(e.mark, "", fmt::format("not valid YAML or JSON: {}", e.msg));
  }
  std::vector<AppDraft> drafts;
  if (r.errors().empty()) {
    if (root.IsNull() || !root.IsDefined()) {
      r.error(YAML::Mark::null_mark(), "", "the file is empty; it needs an `apps:` list");
    } else if (root.IsSequence()) {
      // A bare list of apps, as PM2 also accepts in JSON process files.
      Reader::Entry e{"apps", YAML::Node(), root};
      readApps(r, e, eco.base_dir, options, drafts);
    } else {
      std::vector<Reader::Entry> entries;
      if (r.entries(root, root.Mark(), "", entries)) {
        bool has_apps = false;
        for (const auto& e : entries) {
          if (e.key == "apps") {
            has_apps = true;
            readApps(r, e, eco.base_dir, options, drafts);
          } else if (e.key == "queue") {
            readQueueSection(r, e, eco.queue);
          } else if (e.key == "postgres") {
            readPostgresSection(r, e, eco.postgres);
          } else if (e.key == "mail") {
            readMailSection(r, e, eco.base_dir, eco.mail);
          } else if (e.key == "handlers") {
            readHandlersSection(r, e, eco.handlers);
          } else if (e.key == "deploy") {
            r.warning(e.key_node.Mark(), "deploy",
                      "PM2's `deploy` section is ignored: clusterd does not deploy");
          } else if (!e.key.empty() && e.key[0] == 'x' && e.key.size() > 1 && e.key[1] == '-') {
            // `x-…` keys hold YAML anchors for reuse (`x-defaults: &defaults`).
          } else {
            r.unknownKey(e, e.key, "the top level",
                         std::vector<std::string_view>(std::begin(kTopKeys), std::end(kTopKeys)));
          }
        }
        if (!has_apps) r.error(root.Mark(), "apps", "missing; the file needs an `apps:` list");
      }
    }
  }
  checkApps(r, drafts, options, options.cores > 0 ? options.cores : machineCores());
  for (auto& d : drafts) eco.apps.push_back(std::move(d.spec));
  result.diagnostics = std::move(r.errors());
  result.warnings = std::move(r.warnings());
  // File order reads best in an editor; checks that span apps ran last.
  auto byPosition = [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  };
  std::stable_sort(result.diagnostics.begin(), result.diagnostics.end(), byPosition);
  std::stable_sort(result.warnings.begin(), result.warnings.end(), byPosition);
  return result;
}

LoadResult loadEcosystem(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  if (!in || std::filesystem::is_directory(path, ec)) {
    int err = errno;
    LoadResult result;
    result.unreadable = true;
    std::string why =
        std::filesystem::is_directory(path, ec) ? "it is a directory" : std::strerror(err);
    result.diagnostics.push_back(
        {path, 0, 0, "", fmt::format("cannot read the ecosystem file: {}", why)});
    return result;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    LoadResult result;
    result.unreadable = true;
    result.diagnostics.push_back(
        {path, 0, 0, "", fmt::format("cannot read the ecosystem file: {}", std::strerror(errno))});
    return result;
  }
  return loadEcosystemText(buf.str(), path, options);
}

}  // namespace clusterd::config
