/* Score the rows of a CSV file with a model compiled by opsnb, without Python.
 *
 * Build (BUNDLE is a bundle folder: model.so + model.h):
 *   gcc -O2 -std=c99 -I "$BUNDLE" examples/predict_csv.c "$BUNDLE/model.so" \
 *       -Wl,-rpath,"$BUNDLE" -lm -o predict_csv
 * Run:
 *   ./predict_csv rows.csv            # or read stdin: ./predict_csv < rows.csv
 *
 * Each line holds one row: the features in schema order (categorical features as the integer
 * codes of schema.json), separated by commas; an empty field or "nan" is a missing value. A first
 * line that does not start with a number, a comma or "nan" is a header and is skipped. Prints one
 * prediction per row (a probability or a value) with 9 significant digits, which is exact for
 * the library's float32 output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include "model.h"

static int is_missing(const char* field, size_t len) {
  return len == 0 || (len == 3 && strncasecmp(field, "nan", 3) == 0);
}

/* Fill row[0..n_features) from one CSV line; return 0, or -1 on a wrong field count or value. */
static int parse_row(char* line, union Entry* row, int n_features) {
  char* p = line;
  for (int j = 0; j < n_features; ++j) {
    char* end = p + strcspn(p, ",\r\n");
    size_t len = (size_t)(end - p);
    if (is_missing(p, len)) {
      row[j].missing = -1; /* TL2cgen's missing flag: not NaN */
    } else {
      char* stop;
      row[j].fvalue = strtof(p, &stop);
      if (stop != end) return -1;
    }
    if (j + 1 < n_features) {
      if (*end != ',') return -1;
      p = end + 1;
    } else if (*end == ',') {
      return -1;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  FILE* in = argc > 1 ? fopen(argv[1], "r") : stdin;
  if (!in) {
    perror(argv[1]);
    return 1;
  }
  const int n_features = get_num_feature();
  union Entry* row = malloc(sizeof(union Entry) * (size_t)n_features);
  static char line[1 << 20];
  long number = 0;
  while (fgets(line, sizeof line, in)) {
    ++number;
    const char c = line[0];
    if (number == 1 && !(isdigit((unsigned char)c) || c == '-' || c == '+' || c == '.' ||
                         c == ',' || c == 'n' || c == 'N')) {
      continue; /* a header line */
    }
    if (parse_row(line, row, n_features) != 0) {
      fprintf(stderr, "line %ld: expected %d comma-separated numbers (empty or nan = missing)\n",
              number, n_features);
      return 2;
    }
    float result[N_TARGET * MAX_N_CLASS] = {0.0f}; /* predict adds to it: zero it first */
    predict(row, 0, result);
    printf("%.9g\n", result[0]);
  }
  free(row);
  return 0;
}
