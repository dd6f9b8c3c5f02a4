// Verbs of the db module (placeholder until they land).
#include "cli/commands.h"

namespace clusterd::cli {
void addDbCommands(CLI::App&, CliContext&) {}
}  // namespace clusterd::cli
