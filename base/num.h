/* Numbers as people read them. */
#ifndef TW_BASE_NUM_H
#define TW_BASE_NUM_H

/* The double nearest to the shortest decimal that reads back as the float
 * v (at most 9 significant digits): 1e-05 for the float nearest 1e-5, not
 * 9.99999975e-06. Printed with %.9g it gives that decimal. Non-finite v is
 * returned as it is. */
double tw_float_decimal(float v);

#endif
