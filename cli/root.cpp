// The shared root of the command line (see cli/root.h).
#include "cli/root.h"

#include <cstdlib>

namespace clusterd::cli {

namespace {

std::string defaultHome() {
  if (const char* h = std::getenv("CLUSTERD_HOME"); h && *h) return h;
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.clusterd";
  return "/var/lib/clusterd";
}

std::string envOr(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

CliContext defaultContext(const char* argv0) {
  CliContext ctx;
  ctx.argv0 = argv0;
  ctx.home = defaultHome();
  ctx.redis_url = envOr("CLUSTERD_REDIS_URL");
  ctx.postgres_url = envOr("CLUSTERD_POSTGRES_URL");
  return ctx;
}

std::unique_ptr<CLI::App> makeRootApp(CliContext& ctx) {
  auto app = std::make_unique<CLI::App>(
      "clusterd: a cluster master for any program and a Redis-backed job queue.\n"
      "\n"
      "Examples:\n"
      "  clusterd validate ecosystem/shop.yaml\n"
      "  clusterd start ecosystem/shop.yaml && clusterd status\n"
      "  clusterd enqueue orders order.process '{\"order_id\": 1}'\n",
      "clusterd");
  app->require_subcommand(1);
  app->set_version_flag("--version", "clusterd 0.1.0");
  app->add_option("--home", ctx.home, "Daemon home (default $CLUSTERD_HOME or ~/.clusterd)");
  app->add_option("--redis", ctx.redis_url, "Redis URL (default $CLUSTERD_REDIS_URL)");
  app->add_option("--postgres", ctx.postgres_url, "PostgreSQL URL (default $CLUSTERD_POSTGRES_URL)");
  return app;
}

int runCommandLine(CLI::App& app, CliContext& ctx, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return ctx.exit_code;
}

}  // namespace clusterd::cli
