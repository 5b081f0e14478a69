/* An intrusive doubly linked list: the caches' LRU lists, kept in recency
 * order (head = most recently used, tw_lru_push_front and tw_lru_touch), and
 * the connection guard's queues, kept in arrival order (head = oldest,
 * tw_lru_push_back). A node is a member of the element (put it first so
 * that a node pointer converts to the element). */
#ifndef TW_BASE_LRU_H
#define TW_BASE_LRU_H

#include <stddef.h>

typedef struct tw_lru_node {
    struct tw_lru_node *prev, *next; /* towards head, towards tail */
} tw_lru_node;

typedef struct {
    tw_lru_node *head, *tail;
} tw_lru;

/* Takes n, which is in l, out of l. */
static inline void tw_lru_unlink(tw_lru *l, tw_lru_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
}

/* Puts n, which is not in l, between prev and next (neighbours in l, or
 * NULL at an end). */
static inline void tw_lru_link(tw_lru *l, tw_lru_node *n, tw_lru_node *prev, tw_lru_node *next)
{
    n->prev = prev;
    n->next = next;
    if (prev)
        prev->next = n;
    else
        l->head = n;
    if (next)
        next->prev = n;
    else
        l->tail = n;
}

/* Puts n, which is not in l, at the head of l. */
static inline void tw_lru_push_front(tw_lru *l, tw_lru_node *n) { tw_lru_link(l, n, NULL, l->head); }

/* Puts n, which is not in l, at the tail of l. */
static inline void tw_lru_push_back(tw_lru *l, tw_lru_node *n) { tw_lru_link(l, n, l->tail, NULL); }

/* Moves n, which is in l, to the head of l. */
static inline void tw_lru_touch(tw_lru *l, tw_lru_node *n)
{
    tw_lru_unlink(l, n);
    tw_lru_push_front(l, n);
}

#endif
