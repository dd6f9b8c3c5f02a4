// Verbs of the worker module (placeholder until they land).
#include "cli/commands.h"

namespace clusterd::cli {
void addWorkerCommands(CLI::App&, CliContext&) {}
}  // namespace clusterd::cli
