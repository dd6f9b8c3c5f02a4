// Verbs of the config module (placeholder until they land).
#include "cli/commands.h"

namespace clusterd::cli {
void addConfigCommands(CLI::App&, CliContext&) {}
}  // namespace clusterd::cli
