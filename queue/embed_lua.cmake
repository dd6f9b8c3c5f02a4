# Generates a C++ source holding every queue/lua/*.lua script (each prefixed
# with lib.lua) as a string, so the binary carries its scripts. Run at build
# time with -DOUT=<file.cpp> -DDIR=<lua dir>.
file(READ "${DIR}/lib.lua" lib)
set(names enqueue reserve complete fail extend counts list job admin)
set(body "// Generated from queue/lua/*.lua by queue/embed_lua.cmake; do not edit.\n")
string(APPEND body "#include \"queue/scripts.h\"\n\nnamespace clusterd::queue {\n")
string(APPEND body "std::string_view scriptBody(ScriptId id) {\n  switch (id) {\n")
foreach(n IN LISTS names)
  file(READ "${DIR}/${n}.lua" src)
  string(SUBSTRING "${n}" 0 1 first)
  string(TOUPPER "${first}" first)
  string(SUBSTRING "${n}" 1 -1 tail)
  string(APPEND body "    case ScriptId::k${first}${tail}:\n      return R\"clusterd_lua(${lib}\n${src})clusterd_lua\";\n")
endforeach()
string(APPEND body "  }\n  return {};\n}\n}  // namespace clusterd::queue\n")
file(WRITE "${OUT}.tmp" "${body}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
