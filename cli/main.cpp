// Entry point of the `clusterd` binary: parses the command line and runs one
// verb. Verbs are grouped by module; see cli/commands.h for the exit codes.
#include <cstdlib>
#include <iostream>
#include <unistd.h>

#include "cli/commands.h"
#include "master/trampoline.h"

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

int main(int argc, char** argv) {
  using namespace clusterd::cli;
  // Workers start through this trampoline; it must not pay for the CLI setup.
  if (clusterd::master::isExecTrampoline(argc, argv)) return clusterd::master::runExecTrampoline(argc, argv);
  CliContext ctx;
  ctx.argv0 = argv[0];
  ctx.home = defaultHome();
  ctx.redis_url = envOr("CLUSTERD_REDIS_URL");
  ctx.postgres_url = envOr("CLUSTERD_POSTGRES_URL");

  CLI::App app{
      "clusterd: a cluster master for any program and a Redis-backed job queue.\n"
      "\n"
      "Examples:\n"
      "  clusterd validate ecosystem/shop.yaml\n"
      "  clusterd start ecosystem/shop.yaml && clusterd status\n"
      "  clusterd enqueue orders order.process '{\"order_id\": 1}'\n",
      "clusterd"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "clusterd 0.1.0");
  app.add_option("--home", ctx.home, "Daemon home (default $CLUSTERD_HOME or ~/.clusterd)");
  app.add_option("--redis", ctx.redis_url, "Redis URL (default $CLUSTERD_REDIS_URL)");
  app.add_option("--postgres", ctx.postgres_url, "PostgreSQL URL (default $CLUSTERD_POSTGRES_URL)");

  addConfigCommands(app, ctx);
  addMasterCommands(app, ctx);
  addQueueCommands(app, ctx);
  addWorkerCommands(app, ctx);
  addDbCommands(app, ctx);

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
