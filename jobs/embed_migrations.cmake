# Generates a C++ source holding every jobs/migrations/*.sql file as a string,
# so the binary carries its schema. Run at build time with
#   -DOUT=<file.cpp> -DDIR=<migrations dir>
file(GLOB files RELATIVE "${DIR}" "${DIR}/*.sql")
list(SORT files)
set(body "// Generated from jobs/migrations/*.sql by jobs/embed_migrations.cmake; do not edit.\n")
string(APPEND body "#include \"jobs/migrations.h\"\n\nnamespace clusterd::jobs {\n")
string(APPEND body "const std::vector<Migration>& migrations() {\n  static const std::vector<Migration> all = {\n")
foreach(f IN LISTS files)
  file(READ "${DIR}/${f}" sql)
  string(REGEX MATCH "^([0-9]+)_(.*)\\.sql$" _ "${f}")
  math(EXPR version "${CMAKE_MATCH_1}")
  string(APPEND body "    {${version}, \"${CMAKE_MATCH_2}\", R\"clusterd_sql(${sql})clusterd_sql\"},\n")
endforeach()
string(APPEND body "  };\n  return all;\n}\n}  // namespace clusterd::jobs\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
