# Runs TOOL with ARGS (a ;-list) and writes its stdout to OUT: the build's man pages and
# completions come from the tools themselves (--help-man, --completion SHELL).
# Usage: cmake -DTOOL=... -DARGS=... -DOUT=... -P tool_output.cmake
execute_process(COMMAND ${TOOL} ${ARGS} OUTPUT_FILE ${OUT}.tmp RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(REMOVE ${OUT}.tmp)
  message(FATAL_ERROR "${TOOL} ${ARGS} failed: ${rc}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
