// Loading an ecosystem file: read it, parse it as YAML (JSON is YAML), walk
// the top level, read every app and section, then run the cross-app checks.
// See config/load.h for the promise and docs/CONFIG.md for the format.
#include "config/load.h"

#include <fmt/format.h>

#include <unistd.h>
#include <yaml-cpp/depthguard.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
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

// The file's YAML tree; an error is reported (and a null node returned) for
// a file past the size limit or one yaml-cpp cannot parse.
YAML::Node parseYaml(Reader& r, const std::string& text, const LoadLimits& limits) {
  if (text.size() > limits.max_file_bytes) {
    r.error(YAML::Mark::null_mark(), "",
            fmt::format("the file is larger than {} bytes, the limit for an ecosystem file",
                        limits.max_file_bytes));
    return {};
  }
  try {
    return YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own guard (about 500 levels of flow or block nesting); its
    // message ("bad file") does not say so.
    r.error(e.mark, "",
            fmt::format("nested deeper than the YAML parser allows (about 500 levels; clusterd "
                        "allows {}); flatten the file",
                        limits.max_depth));
  } catch (const YAML::Exception& e) {
    // Only the first syntax error is known: yaml-cpp stops there.
    r.error(e.mark, "", fmt::format("not valid YAML or JSON: {}", e.msg));
  }
  return {};
}

// Walks the whole tree once, aliases and merge keys expanded as the readers
// will see them, and reports the first limit passed: after this the readers'
// work (and the recursion of merge keys in Reader::entries) is bounded.
bool withinLimits(Reader& r, const YAML::Node& root, const LoadLimits& limits) {
  struct Item {
    YAML::Node node;
    int depth;
  };
  std::vector<Item> stack{{root, 1}};
  size_t nodes = 1;
  auto push = [&](const YAML::Node& n, int depth) {
    if (++nodes > limits.max_nodes) return false;
    stack.push_back({n, depth});
    return true;
  };
  while (!stack.empty()) {
    Item item = std::move(stack.back());
    stack.pop_back();
    if (item.depth > limits.max_depth) {
      r.error(item.node.Mark(), "",
              fmt::format("nested deeper than {} levels (counting through aliases); flatten the "
                          "file",
                          limits.max_depth));
      return false;
    }
    bool ok = true;
    if (item.node.IsMap()) {
      for (auto it = item.node.begin(); ok && it != item.node.end(); ++it)
        ok = push(it->first, item.depth + 1) && push(it->second, item.depth + 1);
    } else if (item.node.IsSequence()) {
      for (auto it = item.node.begin(); ok && it != item.node.end(); ++it)
        ok = push(*it, item.depth + 1);
    }
    if (!ok) {
      r.error(root.Mark(), "",
              fmt::format("the file stands for more than {} YAML nodes once its aliases are "
                          "expanded; use fewer aliases of large anchors",
                          limits.max_nodes));
      return false;
    }
  }
  return true;
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
  // Every lookup is recorded, so the caller learns which variables (and
  // which values) the file was resolved from.
  auto seen = std::make_shared<Variables>();
  EnvLookup lookup = [inner = makeLookup(options), seen](const std::string& name) {
    std::optional<std::string> value = inner(name);
    seen->emplace(name, value);
    return value;
  };
  Reader r(path, text, std::move(lookup));

  YAML::Node root = parseYaml(r, text, options.limits);
  std::vector<AppDraft> drafts;
  if (r.errors().empty() && withinLimits(r, root, options.limits)) {
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
  result.variables = std::move(*seen);
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
  auto unreadable = [&](const std::string& why) {
    LoadResult result;
    result.unreadable = true;
    result.diagnostics.push_back({path, 0, 0, "", fmt::format("cannot read the ecosystem file: {}", why)});
    return result;
  };
  if (!in || std::filesystem::is_directory(path, ec)) {
    int err = errno;
    return unreadable(std::filesystem::is_directory(path, ec) ? "it is a directory"
                                                              : std::strerror(err));
  }
  // Read at most one byte past the limit, so neither a huge file nor an
  // endless one (a FIFO, /dev/zero) is read whole.
  std::string text(options.limits.max_file_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return unreadable(std::strerror(errno));
  text.resize(static_cast<size_t>(in.gcount()));
  return loadEcosystemText(text, path, options);
}

}  // namespace clusterd::config
